"""sort / groupby / aggregate / unique / random_shuffle / repartition on a
local cluster, each checked against pandas on the same data."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import pyray
import pyray.data
from pyray.data.aggregate import (AbsMax, AggregateFn, Count, Max, Mean, Min, Quantile, Std,
                                  Sum, Unique)


@pytest.fixture(scope="module", autouse=True)
def local_cluster():
    pyray.init(num_cpus=2, object_store_memory=512 << 20)
    pyray.data.DataContext.get_current().enable_progress_bars = False
    yield
    pyray.shutdown()


def _frame(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.integers(0, 4, n), "s": rng.choice(["x", "y", "z"], n),
                         "b": rng.normal(size=n), "v": rng.integers(0, 1000, n)})


def _ds(df, nblocks=5):
    step = -(-len(df) // nblocks)
    return pyray.data.from_pandas([df.iloc[i:i + step] for i in range(0, len(df), step)])


def _same(got: pd.DataFrame, want: pd.DataFrame):
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True),
                                  check_dtype=False)


def test_sort_multi_key_mixed_descending():
    df = _frame()
    got = _ds(df).sort(["a", "s", "b"], descending=[True, False, True]).to_pandas()
    _same(got, df.sort_values(["a", "s", "b"], ascending=[False, True, False]))
    got = _ds(df).sort("b").to_pandas()
    _same(got, df.sort_values("b"))


def test_sort_nulls_last_and_boundaries():
    t = pa.table({"x": [3, None, 1, 7, None, 5, 2]})
    ds = pyray.data.from_arrow([t.slice(0, 4), t.slice(4)])
    assert [r["x"] for r in ds.sort("x").take_all()] == [1, 2, 3, 5, 7, None, None]
    assert [r["x"] for r in ds.sort("x", descending=True).take_all()] == [7, 5, 3, 2, 1, None, None]
    parts = ds.sort("x", boundaries=[3, 6]).materialize()
    assert parts.num_blocks() == 3
    assert [r["x"] for r in parts.take_all()] == [1, 2, 3, 5, 7, None, None]
    parts = ds.sort("x", descending=True, boundaries=[3, 6]).materialize()
    sizes = [len(pyray.get(r, timeout=30)) for r in parts.get_internal_block_refs()]
    assert sizes == [1, 1, 5]          # [7] [5] [3, 2, 1, None, None]: a bound starts a block


def test_groupby_builtin_aggregations():
    df = _frame()
    ds = _ds(df)
    g = df.groupby("a")
    _same(ds.groupby("a").count().to_pandas(), g.size().rename("count()").reset_index())
    got = ds.groupby("a").sum(["v", "b"]).to_pandas()
    _same(got, pd.DataFrame({"a": g.size().index, "sum(v)": g.v.sum().values,
                             "sum(b)": g.b.sum().values}))
    for name, want in (("min", g.v.min()), ("max", g.v.max()), ("mean", g.v.mean()),
                       ("std", g.v.std())):
        got = getattr(ds.groupby("a"), name)("v").to_pandas()
        assert list(got.columns) == ["a", f"{name}(v)"]
        np.testing.assert_allclose(got[f"{name}(v)"], want.values, rtol=1e-10)
    # on=None: every column but the key (the string column is left out by hand)
    got = _ds(df[["a", "b", "v"]]).groupby("a").mean().to_pandas()
    assert list(got.columns) == ["a", "mean(b)", "mean(v)"]
    np.testing.assert_allclose(got["mean(b)"], g.b.mean().values, rtol=1e-10)


def test_groupby_multi_key_several_aggs_sorted_by_key():
    df = _frame(4000, seed=2)
    rows = AggregateFn(init=lambda key: 0, accumulate_row=lambda acc, row: acc + 1,
                       merge=lambda x, y: x + y, name="rows")
    got = _ds(df, 7).groupby(["s", "a"]).aggregate(
        Count(), Sum("v"), Mean("b"), Std("b", ddof=0), AbsMax("b"), Min("v"), Max("v"),
        Quantile("v", q=0.25), Unique("a"), rows).to_pandas()
    g = df.groupby(["s", "a"])
    want = pd.DataFrame({"count()": g.size(), "sum(v)": g.v.sum(), "mean(b)": g.b.mean(),
                         "std(b)": g.b.std(ddof=0), "abs_max(b)": g.b.apply(lambda x: x.abs().max()),
                         "min(v)": g.v.min(), "max(v)": g.v.max(),
                         "quantile(v)": g.v.quantile(0.25), "rows": g.size()}).reset_index()
    assert got[["s", "a"]].values.tolist() == want[["s", "a"]].values.tolist()
    for col in want.columns[2:]:
        np.testing.assert_allclose(got[col].astype(float), want[col].astype(float), rtol=1e-9,
                                   err_msg=col)
    assert [list(u) for u in got["unique(a)"]] == [[a] for a in got["a"]]


def test_map_groups_numpy_and_pandas():
    df = _frame(2000, seed=3)

    def centered(batch):
        return {"a": batch["a"], "v": batch["v"] - batch["v"].mean()}

    got = _ds(df).groupby("a").map_groups(centered, batch_format="numpy").to_pandas()
    want = df.sort_values("a", kind="stable")
    got = got.sort_values(["a", "v"]).reset_index(drop=True)
    want = pd.DataFrame({"a": want.a, "v": want.v - want.groupby("a").v.transform("mean")})
    _same(got, want.sort_values(["a", "v"]))

    def summary(frame, scale):
        return pd.DataFrame({"s": [frame["s"].iloc[0]], "a": [frame["a"].iloc[0]],
                             "n": [len(frame) * scale]})

    got = _ds(df).groupby(["s", "a"]).map_groups(summary, batch_format="pandas",
                                                 fn_args=(10,)).to_pandas()
    want = (df.groupby(["s", "a"]).size() * 10).rename("n").reset_index()
    _same(got.sort_values(["s", "a"]), want)        # map output order is not kept (as Ray)


def test_map_groups_callable_class_on_actors():
    df = _frame(1500, seed=6)

    class GroupSize:
        def __init__(self, offset):
            self.offset = offset

        def __call__(self, batch):
            return {"a": batch["a"][:1], "n": np.array([len(batch["a"]) + self.offset])}

    got = _ds(df).groupby("a").map_groups(GroupSize, fn_constructor_args=(100,),
                                          concurrency=1).to_pandas()
    want = (df.groupby("a").size() + 100).rename("n").reset_index()
    _same(got.sort_values("a"), want)
    everything = _ds(df).groupby(None).map_groups(lambda t: {"rows": np.array([t.num_rows])},
                                                   batch_format="pyarrow").take_all()
    assert everything == [{"rows": len(df)}]
    assert _ds(df).groupby(None).aggregate(Count(), Max("v")).take_all() == [
        {"count()": len(df), "max(v)": df.v.max()}]


def test_global_aggregates_return_shapes():
    df = _frame(2500, seed=4)
    ds = _ds(df[["b", "v"]])
    assert ds.sum("v") == df.v.sum()
    assert ds.min("v") == df.v.min() and ds.max("v") == df.v.max()
    assert ds.mean("b") == pytest.approx(df.b.mean(), rel=1e-12)
    assert ds.std("b") == pytest.approx(np.std(df.b, ddof=1), rel=1e-10)
    assert ds.std("b", ddof=0) == pytest.approx(np.std(df.b, ddof=0), rel=1e-10)
    both = ds.sum(["b", "v"])
    assert set(both) == {"sum(b)", "sum(v)"} and both["sum(v)"] == df.v.sum()
    assert ds.max() == {"max(b)": df.b.max(), "max(v)": df.v.max()}
    res = ds.aggregate(Count(), Mean("v"), Quantile("v", q=0.5))
    assert res == {"count()": len(df), "mean(v)": pytest.approx(df.v.mean()),
                   "quantile(v)": df.v.median()}
    assert pyray.data.range(10).sum() == 45


def test_nulls_in_values_and_keys():
    t = pa.table({"k": ["p", None, "q", "p", None, "q"], "x": [1.0, 2.0, None, 4.0, None, None]})
    ds = pyray.data.from_arrow([t.slice(0, 3), t.slice(3)])
    rows = ds.groupby("k").aggregate(Sum("x"), Sum("x", ignore_nulls=False, alias_name="strict"),
                                     Count("x", ignore_nulls=True, alias_name="n")).take_all()
    assert rows == [{"k": "p", "sum(x)": 5.0, "strict": 5.0, "n": 2},
                    {"k": "q", "sum(x)": None, "strict": None, "n": 0},
                    {"k": None, "sum(x)": 2.0, "strict": None, "n": 1}]
    assert ds.sum("x") == 7.0
    assert ds.sum("x", ignore_nulls=False) is None
    assert ds.unique("k") == ["p", "q", None]


def test_unique():
    df = _frame(1000, seed=5)
    assert _ds(df).unique("s") == ["x", "y", "z"]
    assert _ds(df).unique("a") == sorted(df.a.unique().tolist())


def test_random_shuffle_permutation_and_seed():
    ds = pyray.data.range(1000, override_num_blocks=4)
    a = [r["id"] for r in ds.random_shuffle(seed=11).take_all()]
    b = [r["id"] for r in ds.random_shuffle(seed=11).take_all()]
    c = [r["id"] for r in ds.random_shuffle(seed=12).take_all()]
    assert sorted(a) == list(range(1000))
    assert a == b and a != c and a != list(range(1000))
    assert ds.random_shuffle(num_blocks=3).materialize().num_blocks() == 3


def test_repartition_and_block_order():
    ds = pyray.data.range(1000, override_num_blocks=3)
    out = ds.repartition(7).materialize()
    assert out.num_blocks() == 7
    sizes = [len(pyray.get(r, timeout=30)) for r in out.get_internal_block_refs()]
    assert sizes == [142, 143, 143, 143, 143, 143, 143]
    assert [r["id"] for r in out.take_all()] == list(range(1000))
    out = ds.repartition(4, shuffle=True).materialize()
    assert out.num_blocks() == 4 and sorted(r["id"] for r in out.take_all()) == list(range(1000))
    assert pyray.data.range(5).repartition(8).materialize().num_blocks() == 8
    out = ds.repartition(target_num_rows_per_block=300).materialize()
    assert [len(pyray.get(r, timeout=30)) for r in out.get_internal_block_refs()] == \
        [300, 300, 300, 100]
    df = _frame(2000, seed=7)
    out = _ds(df).repartition(3, keys="a").materialize()
    assert out.num_blocks() == 3
    blocks = [pyray.get(r, timeout=30).to_pandas() for r in out.get_internal_block_refs()]
    seen = [set(b.a) for b in blocks]
    assert sum(len(x) for x in seen) == df.a.nunique()      # every key in exactly one block
    assert sum(len(b) for b in blocks) == len(df)
    ds = pyray.data.range(600, override_num_blocks=6).materialize()
    firsts = [pyray.get(r, timeout=30)["id"][0].as_py()
              for r in ds.randomize_block_order(seed=3).materialize().get_internal_block_refs()]
    assert sorted(firsts) == [0, 100, 200, 300, 400, 500] and firsts != sorted(firsts)


def test_bad_input_names_the_problem():
    ds = _ds(_frame(300))
    with pytest.raises(ValueError, match="'nope'.*The dataset has columns"):
        ds.sort("nope").take_all()
    with pytest.raises(ValueError, match="'nope'"):
        ds.groupby("nope").count().take_all()
    with pytest.raises(ValueError, match="'nope'"):
        ds.groupby("a").sum("nope").take_all()
    with pytest.raises(ValueError, match="'nope'"):
        ds.sum("nope")
    with pytest.raises(ValueError, match="Length of `descending`"):
        ds.sort(["a", "b"], descending=[True])
    with pytest.raises(ValueError, match="string or a list of strings"):
        ds.sort(3)
    with pytest.raises(TypeError, match="AggregateFn"):
        ds.aggregate("sum")
    with pytest.raises(ValueError, match="num_blocks"):
        ds.repartition(0)
    with pytest.raises(ValueError, match="exactly one of num_blocks or target_num_rows"):
        ds.repartition(2, target_num_rows_per_block=10)


def test_empty_dataset_results():
    ds = pyray.data.range(10).filter(lambda r: r["id"] > 100)
    assert ds.sum("id") is None and ds.std("id") is None
    assert ds.aggregate(Count()) is None
    assert ds.unique("id") == []
    assert ds.sort("id").take_all() == []
    assert ds.groupby("id").count().take_all() == []
    assert ds.random_shuffle().take_all() == []
