"""The daemons' receive-and-dispatch loop (pyray._private.server) and the
one stop sequence for processes (pyray._private.procs)."""
import pickle
import signal
import subprocess
import sys
import threading
import time

import zmq

from pyray._private import errors
from pyray.exceptions import RaySystemError
from pyray._private.procs import stop_processes
from pyray._private.protocol import Op
from pyray._private.server import Server
from pyray._private.transport import Outbox, bind_inbox


class Echo(Server):
    poll_ms = 10
    obeys_signals = False

    def __init__(self, ctx, addr):
        super().__init__()
        self.inbox = bind_inbox(ctx, addr)
        self.out = Outbox(ctx)
        self.seen = []
        self.ticks = 0
        self.closed = False
        self.handlers = {
            Op.KV_GET: self.request(lambda key: key.upper()),
            Op.WAKE: lambda msg, frames: self.seen.append((msg, [bytes(f) for f in frames])),
            Op.KILL_WORKER: self.h_boom,
            Op.SHUTDOWN: self.h_stop,
        }
        self.every(0.01, self.tick, first=0.0)

    def tick(self, now):
        self.ticks += 1

    def h_boom(self, msg, frames):
        raise RuntimeError("a handler that fails")

    def h_stop(self, msg, frames):
        self.stopping = True

    def close(self):
        self.closed = True
        self.out.close()
        self.inbox.close(0)


def test_one_loop_dispatches_answers_and_survives_bad_messages(tmp_path):
    ctx = zmq.Context()
    addr, reply_addr = f"ipc://{tmp_path}/srv", f"ipc://{tmp_path}/reply"
    srv = Echo(ctx, addr)
    replies = bind_inbox(ctx, reply_addr)
    t = threading.Thread(target=srv.serve)
    t.start()
    raw = ctx.socket(zmq.PUSH)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(addr)
    out = Outbox(ctx)
    try:
        raw.send(b"not a pickle")                       # malformed: dropped
        raw.send(pickle.dumps(("no", "op")))            # not an op tuple: dropped
        out.send(addr, (12345,))                        # unknown op: dropped
        out.send(addr, (Op.KILL_WORKER,))               # the handler raises: logged
        out.send(addr, (Op.KV_GET, 7))                  # a request without reply address
        out.send(addr, (Op.KV_GET, 8, reply_addr, "hi"))
        out.send(addr, (Op.KV_GET, 9, reply_addr))      # wrong arity: refused, as an error
        out.send(addr, (Op.WAKE, "x"), [b"frame"])
        assert replies.poll(5000)
        assert pickle.loads(replies.recv()) == (Op.RESPONSE, 8, True, "HI")
        assert replies.poll(5000)
        rid, ok, payload = pickle.loads(replies.recv())[1:]
        err = errors.decode(payload)
        assert rid == 9 and not ok and isinstance(err, RaySystemError)
        assert str(err).startswith("ProtocolError: KV_GET")
        deadline = time.monotonic() + 5
        while not srv.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.seen == [((Op.WAKE, "x"), [b"frame"])]
        while not srv.ticks and time.monotonic() < deadline:   # the timer runs too
            time.sleep(0.01)
        assert srv.ticks >= 1
        out.send(addr, (Op.SHUTDOWN,))
        t.join(5)
        assert not t.is_alive() and srv.closed
    finally:
        srv.stopping = True
        t.join(5)
        out.close()
        raw.close(0)
        replies.close(0)
        ctx.term()


def test_stop_processes_signals_waits_and_kills_what_is_left():
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    stubborn = [sys.executable, "-c", "import signal, sys, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "print('ready', flush=True); time.sleep(60)"]
    polite = subprocess.Popen(sleeper)
    deaf = subprocess.Popen(stubborn, stdout=subprocess.PIPE)
    assert deaf.stdout.readline().strip() == b"ready"
    t = time.monotonic()
    assert stop_processes([polite, deaf.pid], signal.SIGTERM, timeout=0.5) == []
    assert time.monotonic() - t < 5
    assert polite.poll() == -signal.SIGTERM
    deaf.wait(5)
    deaf.stdout.close()
