"""The read side of a data source: a Datasource splits itself into ReadTasks."""
from __future__ import annotations

from typing import Callable, Iterable, List, Optional

from pyray.data._internal.ref_bundle import BlockMetadata


class ReadTask:
    """One unit of reading: calling it yields blocks (pyarrow Tables).

    ``metadata`` is what is known before reading (rows and bytes may be None);
    the executor uses it to size the pipeline and to name input files.
    """

    def __init__(self, read_fn: Callable[[], Iterable], metadata: BlockMetadata):
        self._read_fn = read_fn
        self._metadata = metadata

    @property
    def metadata(self) -> BlockMetadata:
        return self._metadata

    @property
    def read_fn(self) -> Callable[[], Iterable]:
        return self._read_fn

    def __call__(self) -> Iterable:
        return self._read_fn()


class Datasource:
    """Subclass and implement get_read_tasks (and estimate_inmemory_data_size)."""

    def get_name(self) -> str:
        name = type(self).__name__
        return name[:-len("Datasource")] if name.endswith("Datasource") and name != "Datasource" else name

    def estimate_inmemory_data_size(self) -> Optional[int]:
        return None

    def get_read_tasks(self, parallelism: int) -> List[ReadTask]:
        raise NotImplementedError(f"{type(self).__name__}.get_read_tasks")

    @property
    def supports_distributed_reads(self) -> bool:
        return True
