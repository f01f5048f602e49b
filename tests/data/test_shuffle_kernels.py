"""The aggregation and exchange kernels behind sort / groupby / shuffle,
checked against pandas: block-level (no cluster) and as the driver-side
exchange functions on a local cluster (blocks put in the store, the output
bundles read back)."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import pyray
from pyray.data._internal import all_to_all as a2a
from pyray.data._internal.ref_bundle import BlockMetadata, RefBundle
from pyray.data.aggregate import (AbsMax, AggregateFn, AggregateFnV2, Count, Max, Mean, Min, Quantile, Std,
                                  Sum, Unique, merge_partials, partial_aggregate)
from pyray.data.context import DataContext


def _frame(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(1e6, 3.0, n)
    v[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"k": rng.integers(0, 7, n), "k2": rng.choice(["x", "y"], n),
                         "v": v, "i": rng.integers(-50, 50, n)})


def _table(df):
    t = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
    # NaN in v stands for a null, as Arrow users have it
    return t.set_column(t.column_names.index("v"), "v",
                        pa.array(df["v"].to_numpy(), from_pandas=True))


def _custom_count():
    return AggregateFn(init=lambda key: 0, accumulate_row=lambda a, r: a + 1,
                       merge=lambda a, b: a + b, name="rows")


# ------------------------------------------------------------- block level
def test_partials_merged_in_stages_equal_pandas():
    df = _frame()
    t = _table(df)
    aggs = [Count(), Sum("v"), Min("i"), Max("v"), Mean("v"), Std("v"), Std("v", ddof=0,
            alias_name="std0"), AbsMax("i"), Quantile("i", q=0.3), Unique("k2"), _custom_count()]
    parts = [partial_aggregate(t.slice(s, 500), ["k", "k2"], aggs) for s in range(0, len(df), 500)]
    mids = [merge_partials(parts[i:i + 3], ["k", "k2"], aggs, finalize=False)
            for i in range(0, len(parts), 3)]
    got = merge_partials(mids, ["k", "k2"], aggs, finalize=True).to_pandas()
    g = df.groupby(["k", "k2"])
    want = pd.DataFrame({"count()": g.size(), "sum(v)": g.v.sum(), "min(i)": g.i.min(),
                         "max(v)": g.v.max(), "mean(v)": g.v.mean(), "std(v)": g.v.std(ddof=1),
                         "std0": g.v.std(ddof=0), "abs_max(i)": g.i.apply(lambda s: s.abs().max()),
                         "quantile(i)": g.i.quantile(0.3), "rows": g.size()}).reset_index()
    assert list(got.columns) == ["k", "k2"] + [a.name for a in aggs]
    assert got[["k", "k2"]].values.tolist() == want[["k", "k2"]].values.tolist()
    for col in want.columns[2:]:
        np.testing.assert_allclose(got[col].astype(float), want[col].astype(float),
                                   rtol=1e-10, err_msg=col)
    assert all(u == [k2] for u, k2 in zip(got["unique(k2)"], got["k2"]))


def test_null_rules_follow_ray():
    t = pa.table({"g": [1, 1, 2, 2, 3], "v": [1.0, None, None, None, 5.0]})
    aggs = [Sum("v"), Sum("v", ignore_nulls=False, alias_name="sum_nn"), Mean("v"),
            Std("v"), Count("v"), Count("v", ignore_nulls=True, alias_name="valid")]
    got = merge_partials([partial_aggregate(t, ["g"], aggs)], ["g"], aggs, True).to_pylist()
    assert got[0] == {"g": 1, "sum(v)": 1.0, "sum_nn": None, "mean(v)": 1.0,
                      "std(v)": pytest.approx(float("nan"), nan_ok=True), "count(v)": 2, "valid": 1}
    assert got[1]["sum(v)"] is None and got[1]["mean(v)"] is None and got[1]["std(v)"] is None
    assert got[2]["std(v)"] != got[2]["std(v)"]          # one value, ddof=1: NaN as Ray


def test_std_is_stable_for_shifted_values():
    rng = np.random.default_rng(3)
    x = 1e9 + rng.normal(0, 1e-3, 20000)
    t = pa.table({"x": x})
    aggs = [Std("x"), Std("x", ddof=0, alias_name="s0")]
    parts = [partial_aggregate(t.slice(s, 997), [], aggs) for s in range(0, len(x), 997)]
    got = merge_partials(parts, [], aggs, True).to_pylist()[0]
    # per-block means of values near 1e9 are exact to ~1e-7, which bounds the
    # merged result (as in Ray); a naive sum of squares would be off entirely
    assert got["std(x)"] == pytest.approx(np.std(x, ddof=1), rel=1e-5)
    assert got["s0"] == pytest.approx(np.std(x, ddof=0), rel=1e-5)


def test_custom_aggregate_fn_arguments_checked():
    with pytest.raises(ValueError, match="Exactly one of accumulate_row or accumulate_block"):
        AggregateFn(init=lambda k: 0, merge=lambda a, b: a + b, name="x")
    with pytest.raises(TypeError, match="name"):
        AggregateFn(init=lambda k: 0, merge=lambda a, b: a + b, name=None,
                    accumulate_block=lambda a, b: a)
    with pytest.raises(ValueError, match="column"):
        Sum()
    with pytest.raises(ValueError, match="q must be between"):
        Quantile("x", q=2)


def test_builtin_usable_accumulator_style():
    t = pa.table({"x": [1, 2, 3, 4]})
    s = Sum("x")
    acc = s.merge(s.accumulate_block(s.init(None), t.slice(0, 2)),
                  s.accumulate_block(s.init(None), t.slice(2)))
    assert s.finalize(acc) == 10


def test_aggregate_fn_v2_subclass_and_type_errors():
    class SumPlus(AggregateFnV2):
        def __init__(self, on):
            super().__init__(f"sum_plus({on})", lambda: 0, on=on, ignore_nulls=True)

        def aggregate_block(self, block):
            return pa.compute.sum(block[self.get_target_column()]).as_py()

        def combine(self, a, b):
            return a + b

        def _finalize(self, acc):
            return acc + 1000

    t = pa.table({"k": [1, 1, 2, 3], "v": [1, 2, None, 4], "s": ["a", "b", "c", "d"]})
    aggs = [SumPlus("v")]
    parts = [partial_aggregate(t, ["k"], aggs), partial_aggregate(t.slice(0, 1), ["k"], aggs)]
    got = merge_partials(parts, ["k"], aggs, finalize=True).to_pylist()
    assert got == [{"k": 1, "sum_plus(v)": 1004}, {"k": 2, "sum_plus(v)": None},
                   {"k": 3, "sum_plus(v)": 1004}]
    with pytest.raises(TypeError, match="'std\\(s\\)': column 's' has type string"):
        partial_aggregate(t, ["k"], [Std("s")])


# ------------------------------------------------------------- exchanges
@pytest.fixture(scope="module")
def local():
    pyray.init(num_cpus=2, object_store_memory=256 << 20)
    yield DataContext.get_current()
    pyray.shutdown()


def _bundles(df, nblocks):
    t = _table(df)
    out = []
    for idx in np.array_split(np.arange(len(df)), nblocks):
        b = t.take(pa.array(idx, pa.int64()))
        out.append(RefBundle(blocks=((pyray.put(b), BlockMetadata.for_block(b)),)))
    return out


def _read(bundles):
    tables = [pyray.get(r, timeout=30) for b in bundles for r, _ in b.blocks]
    return pa.concat_tables(tables).to_pandas() if tables else None


def test_sort_exchange_range_partitions(local):
    df = _frame(6000)
    fn = a2a.sort_exchange(["k", "k2", "i", "v"], [True, False, False, True])
    out = fn(_bundles(df, 6), local)
    assert len(out) > 1                      # really range-partitioned
    want = df.sort_values(["k", "k2", "i", "v"], ascending=[False, True, True, False],
                          na_position="last").reset_index(drop=True)
    pd.testing.assert_frame_equal(_read(out), want)


def test_groupby_exchange_many_partitions(local):
    df = _frame(6000)
    out = a2a.groupby_exchange(["i"], [Sum("v"), Count()], 4)(_bundles(df, 5), local)
    assert len(out) == 4
    got = _read(out)
    g = df.groupby("i")
    np.testing.assert_array_equal(got["i"], g.size().index)
    np.testing.assert_allclose(got["sum(v)"], g.v.sum(), rtol=1e-12)
    np.testing.assert_array_equal(got["count()"], g.size())


def test_shuffle_and_repartition_exchanges(local):
    df = _frame(3000)
    bundles = _bundles(df, 4)
    a = _read(a2a.shuffle_exchange(None, 7, True, "random_shuffle")(bundles, local))
    b = _read(a2a.shuffle_exchange(None, 7, True, "random_shuffle")(bundles, local))
    c = _read(a2a.shuffle_exchange(None, 8, True, "random_shuffle")(bundles, local))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c) and not a.equals(df)
    key = ["k", "k2", "i", "v"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True),
                                  df.sort_values(key).reset_index(drop=True))
    out = a2a.split_rows_exchange(7)(bundles, local)
    assert [m.num_rows for x in out for _, m in x.blocks] == [428, 429, 428, 429, 428, 429, 429]
    pd.testing.assert_frame_equal(_read(out), df)
    out = a2a.shuffle_exchange(3, 0, False, "repartition")(bundles, local)
    assert [m.num_rows for x in out for _, m in x.blocks] == [1000, 1000, 1000]


def test_global_aggregate_and_errors(local):
    df = _frame(2000)
    bundles = _bundles(df, 3)
    res = a2a.global_aggregate(iter(bundles), [Sum("i"), Std("v"), Unique("k2")], "aggregate")
    assert res["sum(i)"] == df.i.sum()
    assert res["std(v)"] == pytest.approx(df.v.std(), rel=1e-9)
    assert res["unique(k2)"] == ["x", "y"]
    assert a2a.global_aggregate(iter(_bundles(df.iloc[:0], 1)), [Sum("i")], "sum") is None
    with pytest.raises(ValueError, match="'nope'.*columns: \\['k', 'k2', 'v', 'i'\\]"):
        a2a.sort_exchange(["nope"], [False])(bundles, local)
    with pytest.raises(ValueError, match="'missing'"):
        a2a.groupby_exchange(["k"], [Sum("missing")], None)(bundles, local)
