"""pyray.data core: sources, transforms and consumers, each checked against
the same computation in plain numpy / pandas / pyarrow."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import pyray
import pyray.data as rd


@pytest.fixture(scope="module", autouse=True)
def cluster():
    pyray.init(num_cpus=2, object_store_memory=512 << 20)
    rd.DataContext.get_current().enable_progress_bars = False
    yield
    pyray.shutdown()


def ids(rows, key="id"):
    return sorted(r[key] for r in rows)


# ----------------------------------------------------------------- sources
def test_range_is_lazy_and_counts_without_running():
    ds = rd.range(1000, override_num_blocks=7)
    assert repr(ds) == "Dataset(num_rows=1000, schema={id: int64})"
    assert ds.count() == 1000
    assert ds.num_blocks() == 7
    assert ds.stats().startswith("The dataset has not been executed yet")
    assert ids(ds.take_all()) == list(range(1000))


def test_range_tensor_and_from_numpy():
    rows = rd.range_tensor(6, shape=(2, 3)).take_all()
    assert len(rows) == 6
    for r in rows:
        assert r["data"].shape == (2, 3) and (r["data"] == r["data"][0, 0]).all()
    assert sorted(int(r["data"][0, 0]) for r in rows) == list(range(6))
    arr = np.arange(12, dtype=np.float32).reshape(4, 3)
    ds = rd.from_numpy(arr)
    assert ds.schema().names == ["data"]
    got = np.stack([r["data"] for r in ds.take_all()])
    np.testing.assert_array_equal(got, arr)


def test_from_items_pandas_arrow_and_refs():
    items = [{"a": i, "b": str(i)} for i in range(50)]
    ds = rd.from_items(items, override_num_blocks=5)
    assert ds.num_blocks() == 5
    assert ds.take_all() == items
    assert rd.from_items([1, 2, 3]).take_all() == [{"item": 1}, {"item": 2}, {"item": 3}]
    df = pd.DataFrame({"x": np.arange(20), "y": np.arange(20) * 0.5})
    pd.testing.assert_frame_equal(rd.from_pandas(df).to_pandas(), df)
    t = pa.table({"k": list(range(10))})
    assert rd.from_arrow(t).to_arrow_refs() and rd.from_arrow(t).take(2) == [{"k": 0}, {"k": 1}]
    ds = rd.from_numpy_refs([pyray.put(np.arange(5)), pyray.put(np.arange(5, 8))])
    assert ids(ds.take_all(), "data") == list(range(8))
    ds = rd.from_pandas_refs([pyray.put(df)])
    pd.testing.assert_frame_equal(ds.to_pandas(), df)
    ds = rd.from_arrow_refs([pyray.put(t)])
    assert ds.count() == 10


def test_read_datasource_custom():
    class Squares(rd.Datasource):
        def get_read_tasks(self, parallelism):
            out = []
            for i in range(parallelism):
                def read(i=i):
                    yield pa.table({"v": np.arange(i * 10, i * 10 + 10) ** 2})
                out.append(rd.ReadTask(read, rd.BlockMetadata(10, 80, None, [f"f{i}"])))
            return out

    ds = rd.read_datasource(Squares(), override_num_blocks=3)
    assert ds.count() == 30
    assert sorted(r["v"] for r in ds.take_all()) == [i * i for i in range(30)]
    assert sorted(ds.input_files()) == ["f0", "f1", "f2"]


# --------------------------------------------------------------- transforms
def test_map_batches_formats_equal_numpy_and_pandas():
    df = pd.DataFrame({"a": np.arange(1000), "b": np.arange(1000) % 7})
    ds = rd.from_pandas(df)
    out = ds.map_batches(lambda b: {"a": b["a"] * 2, "b": b["b"]}, batch_size=64).to_pandas()
    exp = df.assign(a=df.a * 2)
    pd.testing.assert_frame_equal(out.sort_values("a").reset_index(drop=True), exp)
    out = ds.map_batches(lambda d: d[d.b == 3], batch_format="pandas").to_pandas()
    assert sorted(out.a) == sorted(df[df.b == 3].a)
    out = ds.map_batches(lambda t: t.append_column("c", pa.array(np.ones(t.num_rows))),
                         batch_format="pyarrow", batch_size=None).to_pandas()
    assert list(out.columns) == ["a", "b", "c"] and out.c.sum() == 1000


def test_map_batches_batch_size_args_and_generators():
    seen = rd.range(100, override_num_blocks=10).map_batches(
        lambda b, k, m=0: {"n": np.array([len(b["id"]) * k + m])}, batch_size=25,
        fn_args=(2,), fn_kwargs={"m": 1}).take_all()
    sizes = [(r["n"] - 1) // 2 for r in seen]
    # blocks of 10 are bundled until a batch fits: batches of 25 and the rest
    assert sum(sizes) == 100 and max(sizes) == 25 and sizes.count(25) >= 3

    def two(b):
        yield {"id": b["id"]}
        yield {"id": b["id"] + 1000}
    assert rd.range(10).map_batches(two).count() == 20


def test_zero_copy_batch_read_only_and_default_writable():
    def mutate(b):
        b["id"] += 1
        return b
    assert ids(rd.range(10).map_batches(mutate).take_all()) == list(range(1, 11))

    def check(b):
        return {"w": np.array([b["id"].flags.writeable])}
    flags = rd.range(10, override_num_blocks=1).map_batches(
        check, zero_copy_batch=True, batch_size=None).take_all()
    assert flags == [{"w": False}]


def test_map_flat_map_filter_match_python():
    base = list(range(200))
    ds = rd.range(200, override_num_blocks=4)
    assert ids(ds.map(lambda r: {"id": r["id"] + 1}).take_all()) == [x + 1 for x in base]
    assert ids(ds.flat_map(lambda r: [r, r]).take_all()) == sorted(base + base)
    assert ids(ds.filter(lambda r: r["id"] % 3 == 0).take_all()) == [x for x in base
                                                                      if x % 3 == 0]
    assert ids(ds.filter(expr="id >= 150 and id < 160").take_all()) == list(range(150, 160))
    with pytest.raises(NotImplementedError, match="pass a function instead"):
        ds.filter(expr="id + 1 > 3")


def test_column_ops_and_limit_union_zip():
    ds = rd.range(20)
    ds2 = ds.add_column("sq", lambda df: df["id"] ** 2).rename_columns({"id": "i"})
    rows = ds2.take_all()
    assert all(r["sq"] == r["i"] ** 2 for r in rows) and len(rows) == 20
    assert ds2.select_columns(["sq"]).schema().names == ["sq"]
    assert ds2.drop_columns(["sq"]).columns() == ["i"]
    assert ds.limit(5).take_all() == [{"id": i} for i in range(5)]
    assert ds.limit(5).count() == 5
    u = ds.union(rd.range(3), rd.from_items([{"id": -1}]))
    assert u.count() == 24 and ids(u.take_all()) == sorted(list(range(20)) + [0, 1, 2, -1])
    z = ds.zip(ds.map(lambda r: {"id": r["id"] * 10}))
    assert z.take_all() == [{"id": i, "id_1": i * 10} for i in range(20)]
    with pytest.raises(ValueError, match="different numbers of rows"):
        ds.zip(rd.range(3)).take_all()


def test_random_sample_reproducible():
    ds = rd.range(10000, override_num_blocks=4)
    a = ids(ds.random_sample(0.1, seed=3).take_all())
    b = ids(ds.random_sample(0.1, seed=3).take_all())
    assert a == b and 700 < len(a) < 1300


def test_splits():
    ds = rd.range(10, override_num_blocks=3)
    parts = ds.split(3, equal=True)
    assert [p.count() for p in parts] == [3, 3, 3]
    parts = ds.split(2)
    assert sum(p.count() for p in parts) == 10
    assert sorted(sum((ids(p.take_all()) for p in parts), [])) == list(range(10))
    a, b, c = ds.split_at_indices([2, 7])
    assert (ids(a.take_all()), ids(b.take_all()), ids(c.take_all())) == (
        [0, 1], [2, 3, 4, 5, 6], [7, 8, 9])
    x, y = ds.split_proportionately([0.2])
    assert (x.count(), y.count()) == (2, 8)
    tr, te = ds.train_test_split(test_size=3)
    assert ids(tr.take_all()) == list(range(7)) and ids(te.take_all()) == [7, 8, 9]


# ---------------------------------------------------------------- consumers
def test_iter_batches_sizes_formats_drop_last_and_shuffle():
    ds = rd.range(1000, override_num_blocks=7)
    sizes = [len(b["id"]) for b in ds.iter_batches(batch_size=128)]
    assert sizes == [128] * 7 + [104]
    assert [len(b) for b in ds.iter_batches(batch_size=128, drop_last=True,
                                            batch_format="pandas")] == [128] * 7
    tabs = list(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
    assert all(isinstance(t, pa.Table) for t in tabs) and sum(t.num_rows for t in tabs) == 1000
    got = np.concatenate([b["id"] for b in ds.iter_batches(
        batch_size=100, local_shuffle_buffer_size=300, local_shuffle_seed=1)])
    assert sorted(got.tolist()) == list(range(1000))
    assert got.tolist() != sorted(got.tolist())
    assert sum(1 for _ in ds.iter_rows()) == 1000


def test_take_batch_show_schema_and_sizes(capsys):
    ds = rd.range(50).map_batches(lambda b: {"id": b["id"], "f": b["id"] * 0.5})
    b = ds.take_batch(5)
    assert list(b) == ["id", "f"] and len(b["id"]) == 5
    s = ds.schema()
    assert s.names == ["id", "f"] and s.types == [pa.int64(), pa.float64()]
    assert "Column" in repr(s)
    ds.show(2)
    assert capsys.readouterr().out.count("{") == 2
    assert ds.size_bytes() == 50 * 16
    assert repr(ds).splitlines()[0] == "MapBatches(<lambda>)"


def test_materialize_and_refs():
    ds = rd.range(30, override_num_blocks=3).map(lambda r: {"id": r["id"] * 2})
    m = ds.materialize()
    assert isinstance(m, rd.MaterializedDataset)
    assert repr(m) == "MaterializedDataset(num_blocks=3, num_rows=30, schema={id: int64})"
    assert m.count() == 30 and ids(m.take_all()) == list(range(0, 60, 2))
    arrs = pyray.get(m.to_numpy_refs())
    assert sorted(np.concatenate(arrs).tolist()) == list(range(0, 60, 2))
    dfs = pyray.get(m.to_pandas_refs())
    assert sum(len(d) for d in dfs) == 30


def test_write_datasink_results_and_failure():
    class Collect(rd.Datasink):
        def __init__(self):
            self.events = []

        def on_write_start(self):
            self.events.append("start")

        def write(self, blocks, ctx):
            return (ctx.task_idx, sum(b.num_rows for b in blocks))

        def on_write_complete(self, result):
            self.events.append(("done", result.num_rows, sorted(result.write_returns)))

        def on_write_failed(self, error):
            self.events.append(("failed", type(error).__name__))

    sink = Collect()
    rd.range(100, override_num_blocks=4).write_datasink(sink)
    assert sink.events[0] == "start"
    assert sink.events[1][:2] == ("done", 100)
    assert sorted(n for _, n in sink.events[1][2]) == [25, 25, 25, 25]

    class Broken(Collect):
        def write(self, blocks, ctx):
            raise OSError("disk full")

    sink = Broken()
    with pytest.raises(OSError, match="disk full"):
        rd.range(10).write_datasink(sink)
    assert sink.events[-1][0] == "failed"


def test_all_to_all_hook_and_iter_bundles():
    def reverse(bundles, ctx):
        return list(reversed(bundles))
    ds = rd.range(9, override_num_blocks=3)._all_to_all("Reverse", reverse)
    assert ds.take_all()[0] == {"id": 6}
    assert sum(b.num_rows for b in ds._iter_bundles()) == 9


# ---------------------------------------------------------------- bad input
def test_bad_input_is_named():
    with pytest.raises(ValueError, match="batch_format"):
        rd.range(3).map_batches(lambda b: b, batch_format="csv")
    with pytest.raises(ValueError, match="concurrency"):
        class C:
            def __call__(self, b):
                return b
        rd.range(3).map_batches(C)
    with pytest.raises(ValueError, match="fn_constructor_args"):
        rd.range(3).map_batches(lambda b: b, fn_constructor_args=(1,))
    with pytest.raises(ValueError, match="select_columns: no column 'zz'"):
        rd.range(3).select_columns(["zz"]).take_all()
    with pytest.raises(TypeError, match="from_items"):
        rd.from_items(5)
    with pytest.raises(ValueError, match="limit"):
        rd.range(3).limit(-1)
    with pytest.raises(TypeError, match="not iterable"):
        iter(rd.range(3))
    with pytest.raises(ValueError, match="num_gpus=1"):
        rd.range(3).map_batches(lambda b: b, num_gpus=1).take_all()


def test_iter_torch_batches():
    torch = pytest.importorskip("torch")
    batches = list(rd.range(10).iter_torch_batches(batch_size=4, dtypes=torch.float32))
    assert [len(b["id"]) for b in batches] == [4, 4, 2]
    assert batches[0]["id"].dtype == torch.float32


def test_iterator_and_num_blocks_of_lazy_plan():
    ds = rd.range(100, override_num_blocks=5).map(lambda r: r)
    assert ds.num_blocks() == 5
    it = ds.iterator()
    assert sum(len(b["id"]) for b in it.iter_batches(batch_size=7)) == 100
    assert sum(1 for _ in it.iter_rows()) == 100
    assert "Operator 1" in it.stats()


def test_min_rows_per_write_bundles_blocks():
    class Big(rd.Datasink):
        @property
        def min_rows_per_write(self):
            return 30

        def write(self, blocks, ctx):
            return sum(b.num_rows for b in blocks)

        def on_write_complete(self, result):
            self.sizes = sorted(result.write_returns)

    sink = Big()
    rd.range(100, override_num_blocks=10).write_datasink(sink)
    assert sum(sink.sizes) == 100 and all(n >= 30 for n in sink.sizes[1:])
    assert len(sink.sizes) <= 4
