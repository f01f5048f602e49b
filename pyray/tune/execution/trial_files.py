"""The files of a trial, in Ray's layout, written by the driver:

    <experiment>/<trial dir>/params.json    the config (JSON)
                            params.pkl     the config (pickled)
                            result.json    one JSON line per reported result
                            progress.csv   the same results, flattened, one row each
                            error.txt      the traceback of the trial's last failure

Result lines are buffered and written in batches (at trial end and with each
experiment snapshot), not one write per result."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import queue
import threading

import pyray.cloudpickle as cloudpickle

PARAMS_JSON = "params.json"
PARAMS_PKL = "params.pkl"
RESULT_JSON = "result.json"
PROGRESS_CSV = "progress.csv"
ERROR_TXT = "error.txt"


def json_default(obj):
    """JSON for the values a result may hold (numpy scalars and arrays, sets...)."""
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "shape", None) in ((), None):
        try:
            return item()
        except Exception:
            pass
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return repr(obj) if not isinstance(obj, type) else obj.__name__


def dumps(obj, **kw):
    return json.dumps(obj, default=json_default, **kw)


def flatten(d, prefix="", delimiter="/", out=None):
    out = {} if out is None else out
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            flatten(v, key + delimiter, delimiter, out)
        else:
            out[key] = v
    return out


def _csv_value(v):
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, (list, tuple, dict)):
        return dumps(v)
    return v


def write_params(trial_dir, config):
    os.makedirs(trial_dir, exist_ok=True)
    with open(os.path.join(trial_dir, PARAMS_JSON), "w") as f:
        f.write(dumps(config, indent=2, sort_keys=True))
    with open(os.path.join(trial_dir, PARAMS_PKL), "wb") as f:
        cloudpickle.dump(config, f)


class BackgroundWriter:
    """Runs file writes on one thread so that the experiment loop never waits
    on the disk; ``drain()`` waits for what was queued and re-raises the first
    error (a full disk, a folder removed under the run)."""

    def __init__(self):
        self._q = queue.SimpleQueue()
        self._error = None
        self._pending = 0
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._main, daemon=True, name="tune-files")
        self._thread.start()

    def submit(self, fn, *args):
        with self._cv:
            self._pending += 1
        self._q.put((fn, args))

    def _main(self):
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException as exc:  # reported by drain()
                if self._error is None:
                    self._error = exc
            with self._cv:
                self._pending -= 1
                if not self._pending:
                    self._cv.notify_all()

    def drain(self, timeout=60.0):
        with self._cv:
            if not self._cv.wait_for(lambda: not self._pending, timeout):
                raise TimeoutError(f"writing the experiment's files took over {timeout} s")
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def close(self):
        try:
            self.drain()
        finally:
            self._q.put(None)
            self._thread.join(5)


class TrialWriter:
    """Buffers one trial's result.json lines and progress.csv rows."""

    def __init__(self, trial_dir):
        self.dir = trial_dir
        self.json_lines = []
        self.csv_rows = []
        self.header = None
        csv_path = os.path.join(trial_dir, PROGRESS_CSV)
        if os.path.exists(csv_path):       # a resumed trial: keep the header
            with open(csv_path, newline="") as f:
                self.header = next(csv.reader(f), None)

    def add(self, result):
        self.json_lines.append(dumps(result))
        flat = flatten({k: v for k, v in result.items() if k != "config"})
        if self.header is None:
            self.header = list(flat)
            self._new_csv = True
        self.csv_rows.append(flat)

    def take(self):
        """The buffered lines as (json text, csv text), or None; the buffer is emptied."""
        if not self.json_lines:
            return None
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.header, extrasaction="ignore")
        if getattr(self, "_new_csv", False):
            w.writeheader()
            self._new_csv = False
        for row in self.csv_rows:
            w.writerow({k: _csv_value(v) for k, v in row.items()})
        text = "\n".join(self.json_lines) + "\n"
        self.json_lines = []
        self.csv_rows = []
        return text, buf.getvalue()

    def flush_to(self, background):
        """Hands the buffered lines to ``background`` (a BackgroundWriter) to append."""
        chunk = self.take()
        if chunk is not None:
            background.submit(_append, self.dir, *chunk)


def _append(trial_dir, json_text, csv_text):
    with open(os.path.join(trial_dir, RESULT_JSON), "a") as f:
        f.write(json_text)
    with open(os.path.join(trial_dir, PROGRESS_CSV), "a", newline="") as f:
        f.write(csv_text)


def write_error(trial_dir, text):
    os.makedirs(trial_dir, exist_ok=True)
    with open(os.path.join(trial_dir, ERROR_TXT), "a") as f:
        f.write(text.rstrip("\n") + "\n")
