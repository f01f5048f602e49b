"""The wire protocol's definitions (pyray/_private/protocol.py): one per op,
senders and receivers that disagree on a message's fields fail loudly."""
import ast
import pickle
from pathlib import Path

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
    msg = protocol.PUSH_TASK.make(*range(16))[:-1]
    with pytest.raises(ProtocolError) as info:
        protocol.PUSH_TASK.parse(msg)
    text = str(info.value)
    assert "PUSH_TASK" in text and "expected 16" in text and "got 15" in text and "events" in text


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


# ---------------------------------------------------------------- the static checks
# Every message is built by its definition's ``make``: a tuple written by hand
# (``(Op.X, a, b)``) can disagree with its receiver without anything noticing.

PYRAY = Path(protocol.__file__).resolve().parent.parent
NAMES = frozenset(m.name for m in MESSAGES.values())


def _sources():
    for path in sorted(PYRAY.rglob("*.py")):
        if path.name == "protocol.py" and path.parent.name == "_private":
            continue
        yield path, ast.parse(path.read_text(), filename=str(path))


def _op_ref(node):
    """The message named by an expression that stands for an op code
    (``Op.X``, ``protocol.Op.X``, ``X.op``, ``anything().X``), else None."""
    if not isinstance(node, ast.Attribute):
        return None
    if node.attr in NAMES:
        return node.attr
    if node.attr == "op":
        inner = node.value
        name = inner.id if isinstance(inner, ast.Name) else getattr(inner, "attr", None)
        if name in NAMES:
            return name
    return None


def hand_built_messages(tree):
    """(line, op name) of every tuple literal that starts with an op code;
    a tuple of op codes only (``(Op.A, Op.B)``, a set of ops) is not a message."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple) and node.elts:
            first = _op_ref(node.elts[0])
            if first is None:
                continue
            if len(node.elts) > 1 and all(_op_ref(e) for e in node.elts):
                continue
            found.append((node.lineno, first))
    return found


def test_no_module_builds_a_message_by_hand():
    found = [f"{path.relative_to(PYRAY.parent)}:{line}: ({name}, ...) — use {name}.make(...)"
             for path, tree in _sources() for line, name in hand_built_messages(tree)]
    assert not found, "messages built by hand:\n" + "\n".join(found)


@pytest.mark.parametrize("source, bad", [
    ("out.send(a, (Op.KILL_WORKER, wid))", True),
    ("msg = (protocol.Op.NODE_DEAD, nid)", True),
    ("send((KILL_WORKER.op, wid))", True),
    ("send((_op().PG_REMOVE, pg, me))", True),
    ("send((Op.SHUTDOWN,))", True),
    ("x = (Op.PING, 1, addr) + args", True),
    ("out.send(a, KILL_WORKER.make(wid))", False),
    ("NOT_RESENT = frozenset((Op.KV_PUT, Op.KV_DEL))", False),
    ("if msg[0] in (Op.PING, PUSH_TASK.op): pass", False),
    ("t = (op, 1, addr)", False),
])
def test_the_static_check_sees_hand_built_messages(source, bad):
    assert bool(hand_built_messages(ast.parse(source))) is bad


def _dispatch_keys(tree):
    """(line, name) of every op used as a key of a dict literal or assigned
    as ``something[Op.X] = handler``: the ops some table handles."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k in node.keys:
                if isinstance(k, ast.Attribute) and isinstance(k.value, ast.Name) \
                        and k.value.id == "Op":
                    yield k.lineno, k.attr
                elif _op_ref(k):
                    yield k.lineno, _op_ref(k)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Subscript):
                    key = t.slice
                    if isinstance(key, ast.Attribute) and isinstance(key.value, ast.Name) \
                            and key.value.id == "Op":
                        yield t.lineno, key.attr


def test_dispatch_tables_name_defined_ops_only():
    unknown = [f"{path.relative_to(PYRAY.parent)}:{line}: Op.{name}"
               for path, tree in _sources() for line, name in _dispatch_keys(tree)
               if name not in NAMES]
    assert not unknown, "dispatch tables with ops protocol.py does not define:\n" + \
        "\n".join(unknown)


def _sent_ops(tree):
    """Names of the messages a module sends: ``X.make(...)``, and requests
    made with an op argument (``rpc(addr, Op.X, ...)``, ``request(addr, X.op)``)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "make" and isinstance(f.value, ast.Name) \
                and f.value.id in NAMES:
            yield f.value.id
        for arg in node.args:
            if _op_ref(arg):
                yield _op_ref(arg)


def _handled_ops(tree):
    """Names of the messages some module handles: dispatch-table keys, and
    ops compared against (``op == Op.X``, ``msg[0] is X.op``)."""
    names = {name for _, name in _dispatch_keys(tree)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for e in [node.left] + node.comparators:
                if _op_ref(e):
                    names.add(_op_ref(e))
    return names


# read from an inbox of their own, not through a dispatch table
OWN_INBOX = {"PUSH_TASK": "a worker's task inbox carries only tasks (task_executor.py)"}


def _parsed_ops(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "parse" \
                and isinstance(node.value, ast.Name) and node.value.id in NAMES:
            yield node.value.id


def test_every_message_sent_has_a_handler():
    sent, handled, parsed = set(), set(), set()
    for _path, tree in _sources():
        sent.update(_sent_ops(tree))
        handled |= _handled_ops(tree)
        parsed.update(_parsed_ops(tree))
    assert {"PUSH_TASK", "NODE_RESOURCES", "PG_RESERVE", "GET_NODES"} <= sent, "the scan is broken"
    assert set(OWN_INBOX) <= parsed
    missing = sent - handled - set(OWN_INBOX)
    assert not missing, f"sent but handled nowhere: {sorted(missing)}"


def test_the_gcs_request_handlers_take_their_requests_fields(tmp_path):
    """A request handler is called with the request's fields by name: each
    takes exactly those (and is registered for a request)."""
    import inspect

    from pyray._private.config import Config
    from pyray.gcs.server import GcsServer
    gcs = GcsServer(f"ipc://{tmp_path}/gcs", Config.from_env())
    try:
        adapters = 0
        for op, handler in gcs.handlers.items():
            m = protocol.definition(op)
            fn = getattr(handler, "fn", None)
            if fn is None:
                continue
            adapters += 1
            assert m.request, f"{m.name} is not a request but has a request handler"
            inspect.signature(fn).bind(**dict.fromkeys(m.fields[2:]))
        assert adapters >= 10
    finally:
        gcs.close()
