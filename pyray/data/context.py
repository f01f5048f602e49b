"""DataContext: the knobs of pyray.data, one per driver (``DataContext.get_current()``)."""
from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import Optional

_lock = threading.Lock()
_current: Optional["DataContext"] = None


@dataclass
class ExecutionResources:
    """Limits on what a pipeline may hold at once; None means "derive from the cluster"."""
    cpu: Optional[float] = None
    gpu: Optional[float] = None
    object_store_memory: Optional[int] = None

    @classmethod
    def for_limits(cls, cpu=None, gpu=None, object_store_memory=None) -> "ExecutionResources":
        return cls(cpu=cpu, gpu=gpu, object_store_memory=object_store_memory)


@dataclass
class ExecutionOptions:
    resource_limits: ExecutionResources = field(default_factory=ExecutionResources)
    exclude_resources: ExecutionResources = field(
        default_factory=lambda: ExecutionResources(0, 0, 0))
    preserve_order: bool = False
    locality_with_output: bool = False
    verbose_progress: bool = False
    actor_locality_enabled: bool = True


@dataclass
class DataContext:
    target_max_block_size: int = 128 * 1024 * 1024
    target_min_block_size: int = 1 * 1024 * 1024
    target_shuffle_max_block_size: int = 1024 * 1024 * 1024
    read_op_min_num_blocks: int = 200
    enable_progress_bars: bool = True
    enable_operator_progress_bars: bool = True
    use_push_based_shuffle: bool = False
    execution_options: ExecutionOptions = field(default_factory=ExecutionOptions)
    # share of the object store one pipeline may fill with blocks not yet consumed
    object_store_memory_fraction: float = 0.25
    max_errored_blocks: int = 0
    eager_free: bool = True
    enable_tensor_extension_casting: bool = True
    min_parallelism: int = 200
    actor_prefetcher_enabled: bool = False

    @staticmethod
    def get_current() -> "DataContext":
        global _current
        with _lock:
            if _current is None:
                _current = DataContext()
            return _current

    @staticmethod
    def _set_current(ctx: "DataContext") -> None:
        global _current
        with _lock:
            _current = ctx

    def copy(self) -> "DataContext":
        return copy.deepcopy(self)
