"""File reads and writes on a two-node pyray.cluster_utils.Cluster."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pyray
import pyray as ray
from pyray.cluster_utils import Cluster



def test_read_and_write_across_two_nodes(tmp_path):
    cluster = Cluster()
    try:
        cluster.add_node(num_cpus=1, object_store_memory=128 << 20)
        cluster.add_node(num_cpus=1, object_store_memory=128 << 20)
        cluster.wait_for_nodes()
        cluster.connect()
        src = tmp_path / "src"
        src.mkdir()
        for i in range(8):
            pq.write_table(pa.table({"i": np.arange(i * 10, i * 10 + 10)}),
                           src / f"f{i}.parquet")

        def tag(batch):
            node = pyray.get_runtime_context().get_node_id()
            return {"i": batch["i"], "node": np.array([node] * len(batch["i"]))}

        ds = ray.data.read_parquet(str(src), override_num_blocks=8).map_batches(tag)
        ds.write_parquet(str(tmp_path / "out"))
        back = pq.read_table(str(tmp_path / "out")).to_pandas()
        assert sorted(back["i"]) == list(range(80))
        assert back["node"].nunique() == 2       # the reads ran on both nodes
    finally:
        pyray.shutdown()
        cluster.shutdown()
