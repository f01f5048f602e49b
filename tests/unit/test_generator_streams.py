"""The owner's bookkeeping of generator tasks (pyray/_private/generators.py),
without processes: items recorded by index, duplicates from a retry
skipped, the end, a failure as the last item, freeing, acks."""
import threading

import pytest

from pyray._private import errors, serialization
from pyray._private.generators import (DYNAMIC, STREAMING, DynamicObjectRefGenerator,
                                       Generators, ObjectRefGenerator, Stream, item_id,
                                       wire_value)
from pyray._private.ids import object_id
from pyray._private.ownership import READY
from pyray._private.protocol import (ERROR, GENERATOR_ACK, GENERATOR_ITEMS, IN_STORE, VALUE,
                                     Op)

TASK = b"t" * 16


class FakeOut:
    def __init__(self):
        self.sent = []

    def send(self, addr, msg, frames=None):
        self.sent.append((addr, msg))


class FakeCv:
    def notify_all(self):
        pass


class FakeCoreWorker(Generators):
    """Just what the owner's side of generators reads and writes."""

    def __init__(self):
        self._init_generators()
        self.owned = {}
        self.local_refs = {}
        self.plasma = None
        self.node_id = b"n" * 16
        self.addr = "ipc://owner"
        self.out = FakeOut()
        self.lock = threading.RLock()
        self.cv = FakeCv()
        self.decref_q = []
        self.freed = []
        self.ready = {}

    def _free(self, oid, e):
        del self.owned[oid]
        self.freed.append(oid)

    def set_ready(self, oid, kind, payload, contained_at=None):
        self.ready[oid] = (kind, payload)


class Spec:
    def __init__(self, stream):
        self.task_id = TASK
        self.stream = stream


def value(v):
    return (VALUE, serialization.inline_payload(serialization.serialize(v)), None)


def items_msg(first, values, worker="ipc://w1"):
    return GENERATOR_ITEMS.make(TASK, worker, first, [value(v) for v in values])


def stream(cw, mode=STREAMING, backpressure=None):
    st = Stream(TASK, mode, backpressure)
    st.completion = object_id(TASK, 1)
    cw.streams[TASK] = st
    return st


def test_wire_value_and_item_ids():
    assert wire_value(STREAMING, None) == (STREAMING, -1)
    assert wire_value(STREAMING, 0) == (STREAMING, -1)
    assert wire_value(STREAMING, 3) == (STREAMING, 3)
    assert wire_value(DYNAMIC, 3) == (DYNAMIC, -1)      # no consumer to wait for
    assert item_id(TASK, 0) == object_id(TASK, 2)       # index 1 is the completion object
    assert item_id(TASK, 0) != object_id(TASK, 1)


def test_items_are_recorded_in_order_and_a_retry_sends_no_duplicates():
    cw = FakeCoreWorker()
    st = stream(cw)
    cw._h_generator_items(items_msg(0, ["a", "b"]), [])
    assert st.received == 2
    # a retried task starts again from item 0, on another worker
    cw._h_generator_items(items_msg(0, ["a2", "b2", "c"], worker="ipc://w2"), [])
    assert st.received == 3
    got = [serialization.loads_inline(cw.owned[item_id(TASK, i)].payload) for i in range(3)]
    assert got == ["a", "b", "c"]
    assert st.worker == "ipc://w2"


def test_next_hands_out_refs_then_stops_at_the_end():
    cw = FakeCoreWorker()
    st = stream(cw)
    gen = ObjectRefGenerator.__new__(ObjectRefGenerator)
    gen._cw, gen._st, gen._ref = None, st, None       # no __del__ bookkeeping
    assert cw._take_item(st) is None                  # nothing yet
    assert not cw._item_ready(st)
    cw._h_generator_items(items_msg(0, [1]), [])
    assert cw._item_ready(st)
    ref = cw._take_item(st)
    assert ref.binary() == item_id(TASK, 0)
    cw._generator_finished(Spec(st), [(st.completion, *value(None)[:2])], None)
    assert st.done
    with pytest.raises(StopIteration):
        cw._take_item(st)


def test_a_failed_task_ends_with_its_error_as_the_last_item():
    cw = FakeCoreWorker()
    st = stream(cw)
    cw._h_generator_items(items_msg(0, [1]), [])
    payload = errors.encode(RuntimeError("worker died"))
    cw._generator_failed(Spec(st), payload)
    assert st.received == 2 and st.done
    e = cw.owned[item_id(TASK, 1)]
    assert e.state == READY and e.kind == ERROR
    cw._take_item(st)
    cw._take_item(st)
    with pytest.raises(StopIteration):
        cw._take_item(st)


def test_dropping_frees_unread_items_and_later_ones():
    cw = FakeCoreWorker()
    st = stream(cw)
    cw._h_generator_items(items_msg(0, [1, 2, 3]), [])
    cw._take_item(st)
    cw.local_refs[item_id(TASK, 0)] = 1                # the consumer holds item 0
    cw._generator_dropped(TASK)
    assert cw.freed == [item_id(TASK, 1), item_id(TASK, 2)]
    assert item_id(TASK, 0) in cw.owned
    cw._h_generator_items(items_msg(3, [4]), [])
    assert item_id(TASK, 3) not in cw.owned
    cw._generator_finished(Spec(st), [(st.completion, *value(None)[:2])], None)
    assert TASK not in cw.streams


def test_backpressure_acks_go_to_the_producer():
    cw = FakeCoreWorker()
    st = stream(cw, backpressure=2)
    cw._h_generator_items(items_msg(0, [1, 2]), [])
    cw._take_item(st)
    assert cw.out.sent == [("ipc://w1", GENERATOR_ACK.make(TASK, 1))]
    # a retry elsewhere is told at once how far the consumer got
    cw._h_generator_items(items_msg(0, [1], worker="ipc://w2"), [])
    assert cw.out.sent[-1] == ("ipc://w2", GENERATOR_ACK.make(TASK, 1))
    assert cw.out.sent[-1][1][0] == Op.GENERATOR_ACK


def test_a_stored_duplicate_of_a_freed_item_is_deleted():
    cw = FakeCoreWorker()
    deleted = []
    cw.plasma = object()
    cw._store_delete = deleted.append
    st = stream(cw)
    cw._h_generator_items(GENERATOR_ITEMS.make(TASK, "w", 0, [(IN_STORE, cw.node_id, None)]),
                          [])
    assert st.received == 1
    del cw.owned[item_id(TASK, 0)]                    # read and freed
    cw._h_generator_items(GENERATOR_ITEMS.make(TASK, "w", 0, [(IN_STORE, cw.node_id, None)]),
                          [])
    assert deleted == [item_id(TASK, 0)]


def test_dynamic_value_lists_the_items():
    cw = FakeCoreWorker()
    st = stream(cw, mode=DYNAMIC)
    cw._h_generator_items(items_msg(0, ["x", "y"]), [])
    kind, payload, refs = cw._dynamic_value(st)
    assert kind == VALUE
    listed = serialization.loads_inline(payload)
    assert isinstance(listed, DynamicObjectRefGenerator)
    assert [r.binary() for r in listed] == [item_id(TASK, 0), item_id(TASK, 1)]
    assert len(refs) == 2
