"""The joblib backend "ray": joblib's multiprocessing backend, its pool being
a pyray.util.multiprocessing.Pool (actors of the cluster instead of forked
processes)."""
from __future__ import annotations

from joblib._parallel_backends import FallbackToBackend, MultiprocessingBackend, \
    SequentialBackend

import pyray
from pyray.util.multiprocessing import Pool


class RayBackend(MultiprocessingBackend):
    """``n_jobs=-1`` means every CPU of the cluster; ``n_jobs=k`` a pool of k
    actors.  pyray is initialized on first use if it is not already (an
    ``address`` backend argument picks the cluster)."""

    supports_retrieve_callback = True
    supports_return_generator = False
    supports_timeout = True

    def __init__(self, nesting_level=None, inner_max_num_threads=None,
                 ray_remote_args=None, address=None, **kwargs):
        super().__init__(nesting_level=nesting_level,
                         inner_max_num_threads=inner_max_num_threads, **kwargs)
        self._ray_remote_args = ray_remote_args
        self._address = address

    def _ensure_init(self):
        if not pyray.is_initialized():
            pyray.init(address=self._address)

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None:
            return 1
        if n_jobs < 0:
            self._ensure_init()
            cpus = int(pyray.cluster_resources().get("CPU", 1))
            return max(cpus + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None,
                  **memmapping_pool_kwargs):
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self._ensure_init()
        cpus = int(pyray.cluster_resources().get("CPU", 0))
        remote_args = dict(self._ray_remote_args or {})
        if n_jobs > cpus and "num_cpus" not in remote_args:
            # more jobs than CPUs: the pool's actors share them
            remote_args["num_cpus"] = cpus / n_jobs if cpus else 0
        self._pool = Pool(processes=n_jobs, ray_remote_args=remote_args)
        self.parallel = parallel
        return n_jobs

    def terminate(self):
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
        self.reset_batch_stats()
