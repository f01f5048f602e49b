"""pyray.train: the pieces shared with pyray.tune, named as in ``ray.train``:
``Checkpoint``, ``report``, ``get_checkpoint``, ``get_context`` and the
configs ``RunConfig``, ``CheckpointConfig``, ``FailureConfig``."""
from pyray.train._checkpoint import Checkpoint
from pyray.train._config import CheckpointConfig, FailureConfig, RunConfig
from pyray.train._session import TrainContext, get_checkpoint, get_context, report

__all__ = ["Checkpoint", "CheckpointConfig", "FailureConfig", "RunConfig", "TrainContext",
           "get_checkpoint", "get_context", "report"]
