"""multiprocessing.Pool over the cluster: ``from pyray.util.multiprocessing
import Pool``."""
from multiprocessing import TimeoutError

from pyray.util.multiprocessing.pool import AsyncResult, IMapIterator, IMapUnorderedIterator, Pool

__all__ = ["Pool", "AsyncResult", "IMapIterator", "IMapUnorderedIterator", "TimeoutError"]
