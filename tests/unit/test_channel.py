"""The direct channel's framing (pyray._private.channel) over a real Unix
socket pair: small and large one-frame messages, several frames, messages
split at every byte, a full socket with non-blocking sends, and malformed
headers."""
from __future__ import annotations

import os
import socket
import struct
import threading

import pytest

from pyray._private.channel import Channel, ChannelClosed

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left, right = Channel(a), Channel(b)
    yield left, right
    left.close()
    right.close()


def _recv(ch, count):
    got = []
    while len(got) < count:
        got += ch.recv_blocking()
    return got


def test_one_frame_messages_small_and_large(pair):
    left, right = pair
    payloads = [b"", b"x", os.urandom(1000), os.urandom(64 << 10), os.urandom((64 << 10) + 1),
                os.urandom(3 << 20)]
    sender = threading.Thread(target=lambda: [left.send(p) for p in payloads])
    sender.start()
    got = _recv(right, len(payloads))
    sender.join()
    assert got == [[p] for p in payloads]


def test_several_frames_keep_their_boundaries(pair):
    left, right = pair
    frames = [b"a" * 10, memoryview(os.urandom(5000)), bytearray(b"tail")]
    assert left.send(b"head", frames)
    assert left.send_nowait(b"head2", frames)
    got = _recv(right, 2)
    want = [bytes(f) for f in frames]
    assert got == [[b"head"] + want, [b"head2"] + want]


def test_a_message_split_at_every_byte_is_put_together():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    writer, reader = Channel(a), Channel(b)
    try:
        raw = struct.pack("<IQ", 1, 5) + b"hello" + struct.pack("<IQQ", 2, 1, 2) + b"xyz"
        msgs = []
        for i in range(len(raw)):
            a.send(raw[i:i + 1])
            msgs += reader.recv_available()
        assert msgs == [[b"hello"], [b"x", b"yz"]]
    finally:
        writer.close()
        reader.close()


def test_non_blocking_sends_queue_what_a_full_socket_refuses(pair):
    left, right = pair
    msgs = [os.urandom(50_000) for _ in range(400)]        # far more than the buffers hold
    for m in msgs:
        assert left.send_nowait(m)
    assert left.pending, "the socket took 20 MB without blocking?"
    got = []
    while len(got) < len(msgs):
        left.flush()
        got += right.recv_available()
    assert got == [[m] for m in msgs] and not left.pending


def test_malformed_headers_close_the_channel(pair):
    left, right = pair
    left.sock.sendall(struct.pack("<I", 0) + b"\0" * 8)
    with pytest.raises(ChannelClosed, match="malformed"):
        right.recv_blocking()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader = Channel(b)
    try:
        a.sendall(struct.pack("<IQ", 1, 1 << 50))
        with pytest.raises(ChannelClosed, match="too large"):
            reader.recv_blocking()
    finally:
        a.close()
        reader.close()


def test_a_closed_peer_is_reported(pair):
    left, right = pair
    left.send(b"last")
    left.close()
    assert _recv(right, 1) == [[b"last"]]
    with pytest.raises(ChannelClosed):
        right.recv_blocking()
    right.send(b"x")                    # the first may still fit in a buffer
    assert right.send(b"x") is False
