"""sort / groupby / random_shuffle on a two-node cluster, with the input
blocks made on both nodes so the exchanges move pieces between them."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import pyray
import pyray.data
from pyray.cluster_utils import Cluster
from pyray.data.aggregate import Count, Mean, Std, Sum
from pyray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

MiB = 1 << 20


def test_exchanges_across_two_nodes():
    cluster = Cluster()
    try:
        cluster.add_node(num_cpus=1, object_store_memory=128 * MiB)
        cluster.add_node(num_cpus=1, object_store_memory=128 * MiB)
        cluster.wait_for_nodes()
        cluster.connect()
        pyray.data.DataContext.get_current().enable_progress_bars = False
        nodes = sorted(n["NodeID"] for n in pyray.nodes() if n["Alive"])
        assert len(nodes) == 2
        make = pyray.remote(lambda cols: pa.table(cols))
        rng = np.random.default_rng(0)
        frames = [pd.DataFrame({"k": rng.integers(0, 9, 2000), "v": rng.normal(size=2000),
                                "node": i % 2}) for i in range(6)]
        refs = [make.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            nodes[i % 2], soft=False)).remote({c: f[c].to_numpy() for c in f.columns})
            for i, f in enumerate(frames)]
        ds = pyray.data.from_arrow_refs(refs)
        df = pd.concat(frames, ignore_index=True)

        got = ds.sort(["k", "v"], descending=[True, False]).to_pandas()
        want = df.sort_values(["k", "v"], ascending=[False, True]).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_dtype=False)

        got = ds.groupby("k").aggregate(Count(), Sum("v"), Mean("v"), Std("v")).to_pandas()
        g = df.groupby("k")
        np.testing.assert_array_equal(got["k"], g.size().index)
        np.testing.assert_array_equal(got["count()"], g.size())
        np.testing.assert_allclose(got["sum(v)"], g.v.sum(), rtol=1e-10)
        np.testing.assert_allclose(got["mean(v)"], g.v.mean(), rtol=1e-10)
        np.testing.assert_allclose(got["std(v)"], g.v.std(), rtol=1e-10)
        # rows made on each node all arrive
        assert ds.groupby("node").count().take_all() == [{"node": 0, "count()": 6000},
                                                         {"node": 1, "count()": 6000}]

        shuffled = ds.random_shuffle(seed=5).to_pandas()
        pd.testing.assert_frame_equal(
            shuffled.sort_values(["k", "v"]).reset_index(drop=True),
            df.sort_values(["k", "v"]).reset_index(drop=True), check_dtype=False)
        assert ds.std("v") == pytest.approx(np.std(df.v, ddof=1), rel=1e-10)
    finally:
        if pyray.is_initialized():
            pyray.shutdown()
        cluster.shutdown()
