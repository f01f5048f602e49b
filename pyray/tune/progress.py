"""Console output of an experiment.

* ``verbose=0``: nothing.
* ``verbose=1`` (default): on a terminal, a compact table of the trials
  (status, parameters, iterations, the metric) redrawn in place about once a
  second; otherwise one summary line every 30 s
  (``PYRAY_TUNE_STATUS_INTERVAL_S``) and the table once at the end.
  Trial errors and retries are printed when they happen.
* ``verbose=2``: also a line when a trial finishes; ``verbose=3``: a line
  per reported result.
"""
from __future__ import annotations

import os
import sys
import time

_TTY_INTERVAL_S = 1.0
_MAX_ROWS = 20
_FAR = float("inf")


def _fmt(v):
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.5g}"
    s = str(v)
    return s if len(s) <= 18 else s[:17] + "…"


def _elapsed(s):
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressReporter:
    def __init__(self, verbose=1, metric=None, mode=None, stream=None):
        self.verbose = 1 if verbose is None else verbose
        self.metric, self.mode = metric, mode
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        env = os.environ.get("PYRAY_TUNE_STATUS_INTERVAL_S")
        self.interval = _TTY_INTERVAL_S if self.tty else float(env or 30.0)
        self._due = _FAR
        self._drawn = 0          # lines of the table now on the terminal
        self._t0 = time.monotonic()
        self._changed = False

    # ---- the controller's hooks ------------------------------------------------
    def start(self, ctrl):
        self._t0 = time.monotonic()
        if not self.verbose:
            return
        self._write(f"Experiment {ctrl.experiment_name!r}: results in {ctrl.experiment_path}")
        self._due = time.monotonic() + (0 if self.tty else self.interval)

    def next_due(self):
        return self._due

    def tick(self, ctrl):
        if not self.verbose or time.monotonic() < self._due:
            return
        self._due = time.monotonic() + self.interval
        if self.tty:
            if self._changed or not self._drawn:
                self._draw(ctrl)
        else:
            self._write(self._summary(ctrl))
        self._changed = False

    def on_result(self, trial, result):
        self._changed = True
        if self.verbose >= 3:
            m = self.metric
            val = f" {m}={_fmt(result[m])}" if m and m in result else ""
            self._write(f"Trial {trial} iter {result.get('training_iteration')}{val}")

    def on_complete(self, trial):
        self._changed = True
        if self.verbose >= 2:
            m = self.metric
            last = trial.last_result
            val = f", {m}={_fmt(last[m])}" if m and m in last else ""
            self._write(f"Trial {trial} completed after "
                        f"{last.get('training_iteration', 0)} iterations{val}")

    def on_error(self, trial):
        self._changed = True
        if self.verbose:
            msg = (trial.error_msg or "").strip().splitlines()
            self._write(f"Trial {trial} errored: {msg[-1] if msg else 'unknown error'} "
                        f"(see {os.path.join(trial.local_path, 'error.txt')})")

    def note(self, text):
        if self.verbose:
            self._write(text)

    def end(self, ctrl):
        if not self.verbose:
            return
        self._clear()
        self._write("\n".join(self._table(ctrl, final=True)))
        self._due = _FAR

    # ---- rendering ---------------------------------------------------------------
    def _counts(self, trials):
        counts = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))

    def _best(self, trials):
        m, mode = self.metric, self.mode
        if not m or mode not in ("min", "max"):
            return ""
        vals = [(t.last_result[m], t) for t in trials
                if isinstance(t.last_result.get(m), (int, float))]
        if not vals:
            return ""
        v, t = (max if mode == "max" else min)(vals, key=lambda x: x[0])
        return f" | best {m}={_fmt(v)} ({t})"

    def _summary(self, ctrl):
        trials = ctrl.get_trials()
        return (f"[{_elapsed(time.monotonic() - self._t0)}] {len(trials)} trials: "
                f"{self._counts(trials)}{self._best(trials)}")

    def _table(self, ctrl, final=False):
        trials = ctrl.get_trials()
        lines = [f"Trial status: {self._counts(trials)} | "
                 f"{_elapsed(time.monotonic() - self._t0)} elapsed{self._best(trials)}"]
        order = {"RUNNING": 0, "PAUSED": 1, "PENDING": 2, "ERROR": 3, "TERMINATED": 4}
        shown = sorted(trials, key=lambda t: (order.get(t.status, 5), t.index))
        limit = _MAX_ROWS if not final or len(trials) > _MAX_ROWS else len(trials)
        shown = shown[:limit]
        params = []
        for t in shown:
            for k in t.evaluated_params:
                if k not in params:
                    params.append(k)
        params = params[:4]
        metric = [self.metric] if self.metric else []
        head = ["Trial name", "status"] + params + ["iter"] + metric
        rows = []
        for t in shown:
            last = t.last_result
            rows.append([str(t), t.status] + [_fmt(t.evaluated_params.get(p, "")) for p in params]
                        + [_fmt(last.get("training_iteration", ""))]
                        + [_fmt(last.get(m, "")) for m in metric])
        widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
        for r in [head] + rows:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        if len(trials) > len(shown):
            lines.append(f"... {len(trials) - len(shown)} more trials")
        return lines

    def _clear(self):
        if self.tty and self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self, ctrl):
        lines = self._table(ctrl)
        self._clear()
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)

    def _write(self, text):
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()
