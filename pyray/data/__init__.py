"""pyray.data: lazy, streaming datasets of Arrow blocks (drop-in for ray.data)."""
from pyray.data import exceptions  # noqa: F401 - ray.data.exceptions
from pyray.data._internal.actor_pool import ActorPoolStrategy
from pyray.data._internal.ref_bundle import BlockMetadata, RefBundle
from pyray.data.block import Block, BlockAccessor
from pyray.data.context import DataContext, ExecutionOptions, ExecutionResources
from pyray.data.dataset import Dataset, MaterializedDataset, Schema
from pyray.data.datasource import Datasink, Datasource, ReadTask, WriteResult
from pyray.data.iterator import DataIterator
from pyray.data.read_api import (from_arrow, from_arrow_refs, from_blocks, from_items,
                                 from_numpy, from_numpy_refs, from_pandas, from_pandas_refs,
                                 range, range_tensor, read_datasource)

__all__ = [
    "Block", "BlockAccessor", "BlockMetadata", "RefBundle", "DataContext",
    "ExecutionOptions", "ExecutionResources", "Datasource", "ReadTask", "Datasink",
    "WriteResult", "ActorPoolStrategy", "Dataset", "MaterializedDataset", "Schema",
    "DataIterator", "from_arrow", "from_arrow_refs", "from_blocks", "from_items",
    "from_numpy", "from_numpy_refs", "from_pandas", "from_pandas_refs", "range",
    "range_tensor", "read_datasource",
]

# files: the readers (ray.data.read_*); Partitioning etc. are in pyray.data.datasource
from pyray.data._internal.io_api import (read_binary_files, read_csv, read_images,  # noqa: E402
                                         read_json, read_numpy, read_parquet, read_text)

__all__ += ["read_parquet", "read_csv", "read_json", "read_numpy", "read_text",
            "read_binary_files", "read_images"]

# sort / groupby / shuffle
from pyray.data import aggregate  # noqa: E402
from pyray.data.grouped_data import GroupedData  # noqa: E402
__all__ += ["aggregate", "GroupedData"]
