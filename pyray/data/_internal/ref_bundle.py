"""What flows between the operators of a running pipeline.

A block is a ``pyarrow.Table`` held in the object store.  Its metadata travels
beside it (returned by the same task as a second, tiny object) so that the
executor can count rows and bytes and apply backpressure without fetching the
block itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple


@dataclass
class BlockMetadata:
    num_rows: int
    size_bytes: int
    schema: Any = None                      # pyarrow.Schema, or None when unknown
    input_files: List[str] = field(default_factory=list)
    exec_stats: Optional[dict] = None       # wall_s, cpu_s, peak_rss of the producing task

    @classmethod
    def for_block(cls, block, input_files=None, exec_stats=None) -> "BlockMetadata":
        return cls(num_rows=block.num_rows, size_bytes=block.nbytes, schema=block.schema,
                   input_files=list(input_files or ()), exec_stats=exec_stats)


@dataclass
class RefBundle:
    """One or more blocks moving together, each with its metadata."""
    blocks: Tuple[Tuple[Any, BlockMetadata], ...]   # ((ObjectRef[pa.Table], BlockMetadata), ...)
    owns_blocks: bool = True

    @property
    def num_rows(self) -> int:
        return sum(m.num_rows for _, m in self.blocks)

    @property
    def size_bytes(self) -> int:
        return sum(m.size_bytes for _, m in self.blocks)

    @property
    def block_refs(self) -> list:
        return [r for r, _ in self.blocks]

    @property
    def metadata(self) -> List[BlockMetadata]:
        return [m for _, m in self.blocks]
