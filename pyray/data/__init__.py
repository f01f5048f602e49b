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

# sort / groupby / shuffle
from pyray.data import aggregate  # noqa: E402
from pyray.data.grouped_data import GroupedData  # noqa: E402
__all__ += ["aggregate", "GroupedData"]
