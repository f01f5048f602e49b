"""pyray.data: lazy, streaming datasets of Arrow blocks (drop-in for ray.data)."""
from pyray.data._internal.ref_bundle import BlockMetadata, RefBundle
from pyray.data.block import Block, BlockAccessor
from pyray.data.context import DataContext, ExecutionOptions, ExecutionResources
from pyray.data.datasource import Datasink, Datasource, ReadTask, WriteResult

__all__ = [
    "Block", "BlockAccessor", "BlockMetadata", "RefBundle", "DataContext",
    "ExecutionOptions", "ExecutionResources", "Datasource", "ReadTask", "Datasink",
    "WriteResult",
]

# files: the readers (ray.data.read_*); Partitioning etc. are in pyray.data.datasource
from pyray.data._internal.io_api import (read_binary_files, read_csv, read_images,  # noqa: E402
                                         read_json, read_numpy, read_parquet, read_text)

__all__ += ["read_parquet", "read_csv", "read_json", "read_numpy", "read_text",
            "read_binary_files", "read_images"]
