"""The process side of a trial: an actor that runs one trial at a time and is
reused for the next one (no process start per trial).

The driver calls ``start`` (returns the trial's first event), then ``next``
for each further event, ``save`` to checkpoint on demand and ``stop`` to end
the trial early.  An event is ``(kind, result, checkpoint)`` with kind
"result" (``result`` has the automatic fields filled in, ``checkpoint`` is
``(path, index)`` of a checkpoint persisted in the trial folder, or None) or
"done" (the trainable finished).  A trainable that raises makes the call
raise, so the driver sees a ``RayTaskError`` that is also the user's type.
"""
from __future__ import annotations

import inspect
import os
import queue
import shutil
import threading

from pyray.train import Checkpoint, _session
from pyray.tune.trainable.trainable import Trainable, _Clock

_STOP_JOIN_S = 10.0


class _StopTrial(BaseException):
    """Raised inside a function trainable's ``report`` when Tune stops the trial."""


class _Session:
    """What ``tune.report`` / ``get_checkpoint`` / ``get_context`` reach in a trial."""

    def __init__(self, info, restore, ckpt_index):
        self.info = info
        self.restore = restore
        self.ckpt_index = ckpt_index
        self.clock = _Clock(restore["iteration"] if restore else 0,
                            restore["time_total_s"] if restore else 0.0)
        self.out = queue.SimpleQueue()
        self.cont = threading.Semaphore(0)
        self.stopping = False

    def persist(self, checkpoint):
        """Copies a reported checkpoint into the trial folder as checkpoint_NNNNNN."""
        if not isinstance(checkpoint, Checkpoint):
            raise TypeError(f"report(checkpoint=...) expects a tune.Checkpoint, got "
                            f"{type(checkpoint).__name__}: use Checkpoint.from_directory(dir).")
        idx = self.ckpt_index
        self.ckpt_index += 1
        dest = os.path.join(self.info["trial_dir"], f"checkpoint_{idx:06d}")
        if os.path.abspath(checkpoint.path) != dest:
            if os.path.exists(dest):
                shutil.rmtree(dest)
            shutil.copytree(checkpoint.path, dest)
        return dest, idx

    def report(self, metrics, checkpoint):
        if self.stopping:
            raise _StopTrial()
        ck = self.persist(checkpoint) if checkpoint is not None else None
        result = self.clock.fill(metrics)
        result["checkpoint_dir_name"] = os.path.basename(ck[0]) if ck else None
        self.out.put(("result", result, ck))
        self.cont.acquire()
        if self.stopping:
            raise _StopTrial()

    def get_checkpoint(self):
        r = self.restore
        return Checkpoint(r["path"]) if r and r.get("path") else None


class _FunctionRun:
    """A function trainable, run in its own thread; ``report`` hands each
    result over and waits until the driver asks for the next."""

    def __init__(self, fn, config, session):
        self.session = session
        self.first = True
        self.thread = threading.Thread(target=self._main, args=(fn, config), daemon=True,
                                       name="tune-trial")
        self.thread.start()

    def _main(self, fn, config):
        s = self.session
        try:
            ret = fn(config)
            if isinstance(ret, dict) and not s.stopping:
                s.report(ret, None)
            s.out.put(("done", None, None))
        except _StopTrial:
            s.out.put(("done", None, None))
        except BaseException as exc:  # handed to the caller of next()
            s.out.put(("error", exc, None))

    def next(self):
        if self.first:
            self.first = False
        else:
            self.session.cont.release()
        kind, payload, ck = self.session.out.get()
        if kind == "error":
            raise payload
        return kind, payload, ck

    def save(self):
        return None     # a function trainable checkpoints when it reports

    def stop(self):
        s = self.session
        s.stopping = True
        s.cont.release()
        self.thread.join(_STOP_JOIN_S)
        return not self.thread.is_alive()


class _ClassRun:
    """A ``Trainable`` subclass: one ``train()`` per ``next``."""

    def __init__(self, obj, session, checkpoint_frequency):
        self.obj = obj
        self.session = session
        self.freq = checkpoint_frequency
        obj._clock = session.clock

    def _save(self):
        s = self.session
        idx = s.ckpt_index
        s.ckpt_index += 1
        dest = os.path.join(s.info["trial_dir"], f"checkpoint_{idx:06d}")
        os.makedirs(dest, exist_ok=True)
        self.obj.save(dest)
        return dest, idx

    def next(self):
        result = self.obj.train()
        ck = None
        if result.pop("should_checkpoint", False) or (
                self.freq and self.obj.iteration % self.freq == 0):
            ck = self._save()
        result["checkpoint_dir_name"] = os.path.basename(ck[0]) if ck else None
        return "result", result, ck

    def save(self):
        return self._save()

    def stop(self):
        self.obj.stop()
        return True


class TrialActor:
    """Hosts trials of one experiment; created with the (already serialized)
    trainable, reused across trials."""

    def __init__(self, trainable):
        self.trainable = trainable
        self.run = None
        self.obj = None         # the Trainable instance kept for reset_config

    def start(self, config, info, restore, ckpt_index, checkpoint_frequency):
        self._end()
        if info.get("chdir"):
            os.makedirs(info["trial_dir"], exist_ok=True)
            os.chdir(info["trial_dir"])
        session = _Session(info, restore, ckpt_index)
        _session._set(session)
        tr = self.trainable
        if inspect.isclass(tr) and issubclass(tr, Trainable):
            obj = self.obj
            if obj is None or type(obj) is not tr or not obj.reset(config):
                if obj is not None:
                    obj.stop()
                obj = tr(config)
            self.obj = obj
            if restore and restore.get("path"):
                obj.restore(restore["path"])
            self.run = _ClassRun(obj, session, checkpoint_frequency)
        else:
            self.run = _FunctionRun(tr, config, session)
        return self.run.next()

    def next(self):
        return self.run.next()

    def save(self):
        return self.run.save()

    def stop(self):
        """Ends the current trial; False when it would not stop (the actor
        then should not be reused)."""
        ok = self._end()
        return ok

    def _end(self):
        run, self.run = self.run, None
        if run is None:
            return True
        try:
            ok = run.stop() if isinstance(run, _FunctionRun) else True
        finally:
            _session._set(None)
        return ok

    def shutdown(self):
        self._end()
        if self.obj is not None:
            obj, self.obj = self.obj, None
            obj.stop()
