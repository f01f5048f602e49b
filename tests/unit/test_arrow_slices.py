"""An Arrow table that is a slice of a bigger one is stored with its own
rows only (pyarrow's reducer would carry the parent's whole buffers), and
comes back equal; a table that owns its buffers is stored as it is."""
import numpy as np
import pyarrow as pa

from pyray._private.serialization import loads_inline, serialize


def _roundtrip(value):
    ser = serialize(value)
    return ser, loads_inline((ser.data, [bytes(b) for b in ser.buffers]))


def test_a_slice_is_stored_with_its_rows_only():
    t = pa.table({"x": np.arange(1_000_000, dtype=np.float64),
                  "s": pa.array([str(i) for i in range(1_000_000)])})
    part = t.slice(10, 100)
    ser, back = _roundtrip(part)
    assert ser.nbytes < 20_000, ser.nbytes          # not the parent's ~18 MB
    assert back.equals(part) and back.column("x")[0].as_py() == 10.0
    batch = t.to_batches()[0].slice(5, 50)
    ser, back = _roundtrip(batch)
    assert ser.nbytes < 20_000 and back.equals(batch)


def test_a_whole_table_keeps_its_buffers_out_of_band():
    t = pa.table({"x": np.arange(1_000_000, dtype=np.float64)})
    ser, back = _roundtrip(t)
    assert any(b.nbytes == 8_000_000 for b in ser.buffers)
    assert back.equals(t)
