"""The write side: a Datasink receives the blocks of each write task."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, List, Optional


@dataclass
class WriteResult:
    num_rows: int = 0
    size_bytes: int = 0
    write_returns: List[Any] = field(default_factory=list)


class TaskContext:
    """Given to Datasink.write: which write task this is."""

    def __init__(self, task_idx: int, op_name: str = "Write"):
        self.task_idx = task_idx
        self.op_name = op_name
        self.kwargs: dict = {}


class Datasink:
    """Subclass and implement write(blocks, ctx)."""

    def on_write_start(self) -> None:
        pass

    def write(self, blocks: Iterable, ctx: TaskContext) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.write")

    def on_write_complete(self, write_result: WriteResult) -> None:
        pass

    def on_write_failed(self, error: Exception) -> None:
        pass

    def get_name(self) -> str:
        name = type(self).__name__
        return name[:-len("Datasink")] if name.endswith("Datasink") and name != "Datasink" else name

    @property
    def supports_distributed_writes(self) -> bool:
        return True

    @property
    def min_rows_per_write(self) -> Optional[int]:
        return None
