"""The wire protocol's definitions (pyray/_private/protocol.py): one per op,
senders and receivers that disagree on a message's fields fail loudly."""
import pickle

import pytest

from pyray._private import protocol
from pyray._private.protocol import MESSAGES, Op, ProtocolError


def test_every_op_has_one_definition_and_a_name():
    names = [m.name for m in MESSAGES.values()]
    assert len(names) == len(set(names))
    for op, m in MESSAGES.items():
        assert m.op == op
        assert getattr(Op, m.name) == op
        assert getattr(protocol, m.name) is m


@pytest.mark.parametrize("m", list(MESSAGES.values()), ids=lambda m: m.name)
def test_make_then_parse_round_trips_through_pickle(m):
    values = [f"v{i}" for i in range(len(m.fields))]
    wire = pickle.loads(pickle.dumps(m.make(*values), protocol=5))
    assert type(wire) is tuple and wire[0] == m.op
    view = m.parse(wire)
    assert [getattr(view, f) for f in m.fields] == values
    assert view.op == m.op


@pytest.mark.parametrize("m", list(MESSAGES.values()), ids=lambda m: m.name)
def test_a_message_with_a_field_too_many_is_refused(m):
    wire = (m.op,) + tuple(range(len(m.fields) + 1))
    with pytest.raises(ProtocolError, match=m.name):
        m.parse(wire)


def test_a_message_with_a_field_missing_is_refused_with_the_field_names():
    msg = protocol.PUSH_TASK.make(*range(15))[:-1]
    with pytest.raises(ProtocolError) as info:
        protocol.PUSH_TASK.parse(msg)
    text = str(info.value)
    assert "PUSH_TASK" in text and "expected 15" in text and "got 14" in text and "shape" in text


def test_a_sender_with_the_wrong_fields_fails_at_the_sender():
    with pytest.raises(TypeError):
        protocol.LEASE_GRANTED.make(1, 2, 3)
    with pytest.raises(TypeError):
        protocol.WORKER_DIED.make(lease_id=1, worker_id=b"w", why="x")


def test_optional_trailing_fields_take_their_defaults():
    m = protocol.NODE_RESOURCES.parse((Op.NODE_RESOURCES, b"n", {"CPU": 1.0}))
    assert m.total is None
    assert protocol.NODE_RESOURCES.make(b"n", {}) == (Op.NODE_RESOURCES, b"n", {}, None)
    assert protocol.SHUTDOWN.parse((Op.SHUTDOWN,)).reply_to is None
    with pytest.raises(ProtocolError):
        protocol.NODE_RESOURCES.parse((Op.NODE_RESOURCES, b"n"))


def test_requests_carry_an_id_and_a_reply_address_first():
    for m in MESSAGES.values():
        if m.request:
            assert m.fields[:2] == ("req_id", "reply_to"), m.name
    assert protocol.KV_GET.make(7, "ipc://me", "k") == (Op.KV_GET, 7, "ipc://me", "k")


def test_an_unknown_op_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="unknown op"):
        protocol.definition(9999)
    assert protocol.definition(Op.PUSH_TASK) is protocol.PUSH_TASK
