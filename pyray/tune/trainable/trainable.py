"""The class API: subclass ``Trainable`` and implement ``setup`` / ``step`` /
``save_checkpoint`` / ``load_checkpoint`` (and optionally ``reset_config``,
``cleanup``), as in Ray.

    class MyTrainable(tune.Trainable):
        def setup(self, config):
            self.x = 0
        def step(self):
            self.x += self.config["lr"]
            return {"score": self.x}
        def save_checkpoint(self, checkpoint_dir):
            return {"x": self.x}
        def load_checkpoint(self, checkpoint):
            self.x = checkpoint["x"]
"""
from __future__ import annotations

import copy
import os
import pickle
import socket
import time

from pyray.train import _session

_DICT_CHECKPOINT = "dict_checkpoint.pkl"


class _Clock:
    """Fills in Ray's automatic result fields (training_iteration, time_*,
    pid, hostname, ...) for one run of a trial."""

    def __init__(self, iteration=0, time_total=0.0):
        self.iteration = iteration
        self.time_total = time_total
        self.iters_since_restore = 0
        self.time_since_restore = 0.0
        self.last = time.time()
        self.hostname = socket.gethostname()
        self.pid = os.getpid()

    def fill(self, metrics):
        now = time.time()
        self.iteration += 1
        self.iters_since_restore += 1
        r = dict(metrics)
        dt = r.get("time_this_iter_s")
        if not isinstance(dt, (int, float)):
            dt = now - self.last
        self.last = now
        self.time_total += dt
        self.time_since_restore += dt
        r.setdefault("done", False)
        r.setdefault("training_iteration", self.iteration)
        r["timestamp"] = int(now)
        r["date"] = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
        r["time_this_iter_s"] = dt
        r["time_total_s"] = self.time_total
        r["pid"] = self.pid
        r["hostname"] = self.hostname
        r["node_ip"] = "127.0.0.1"
        r["time_since_restore"] = self.time_since_restore
        r["iterations_since_restore"] = self.iters_since_restore
        return r


class Trainable:
    """Base class of class trainables (see the module docstring)."""

    def __init__(self, config=None, logger_creator=None, storage=None):
        s = _session._get()
        info = s.info if s is not None else {}
        self.config = copy.deepcopy(config) if config is not None else {}
        self._info = info
        self._clock = _Clock()
        self.setup(copy.deepcopy(self.config))

    # ---- what subclasses implement --------------------------------------
    def setup(self, config):
        pass

    def step(self):
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def save_checkpoint(self, checkpoint_dir):
        raise NotImplementedError(
            f"{type(self).__name__}.save_checkpoint() is not implemented: implement it (and "
            f"load_checkpoint) to checkpoint this trainable.")

    def load_checkpoint(self, checkpoint):
        raise NotImplementedError(f"{type(self).__name__}.load_checkpoint() is not implemented")

    def reset_config(self, new_config):
        return False

    def cleanup(self):
        pass

    @classmethod
    def default_resource_request(cls, config):
        return None

    # ---- what Tune calls --------------------------------------------------
    @property
    def iteration(self):
        return self._clock.iteration

    training_iteration = iteration

    @property
    def trial_id(self):
        return self._info.get("trial_id", "default")

    @property
    def trial_name(self):
        return self._info.get("trial_name", "default")

    @property
    def logdir(self):
        return self._info.get("trial_dir")

    @property
    def trial_resources(self):
        return self._info.get("resources")

    def get_config(self):
        return self.config

    def train(self):
        """Runs one step() and returns its result with the automatic fields."""
        result = self.step()
        if not isinstance(result, dict):
            raise TypeError(f"{type(self).__name__}.step() must return a dict of metrics, got "
                            f"{type(result).__name__}.")
        return self._clock.fill(result)

    def save(self, checkpoint_dir=None):
        """Saves into ``checkpoint_dir`` (a new temporary folder when None) and
        returns the folder."""
        if checkpoint_dir is None:
            import tempfile
            checkpoint_dir = tempfile.mkdtemp(prefix="checkpoint_")
        data = self.save_checkpoint(checkpoint_dir)
        if isinstance(data, dict):
            with open(os.path.join(checkpoint_dir, _DICT_CHECKPOINT), "wb") as f:
                pickle.dump(data, f)
        elif data is not None and os.path.abspath(str(data)) != os.path.abspath(checkpoint_dir):
            raise ValueError(f"{type(self).__name__}.save_checkpoint() must return None, a "
                             f"dict, or the checkpoint_dir it was given; got {data!r}.")
        return checkpoint_dir

    def restore(self, checkpoint_path):
        """Loads a checkpoint made by ``save`` (a folder or a Checkpoint)."""
        checkpoint_path = getattr(checkpoint_path, "path", checkpoint_path)
        dict_file = os.path.join(checkpoint_path, _DICT_CHECKPOINT)
        if os.path.exists(dict_file):
            with open(dict_file, "rb") as f:
                self.load_checkpoint(pickle.load(f))
        else:
            self.load_checkpoint(checkpoint_path)

    def stop(self):
        self.cleanup()

    def reset(self, new_config):
        """Re-targets this instance at another trial; False when it cannot."""
        if type(self).reset_config is Trainable.reset_config:
            return False
        self.config = copy.deepcopy(new_config)
        self._clock = _Clock()
        s = _session._get()
        self._info = s.info if s is not None else {}
        return bool(self.reset_config(copy.deepcopy(new_config)))
