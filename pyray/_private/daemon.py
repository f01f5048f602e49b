"""What the daemons (GCS, raylet) share at the start and the end of their
life: the parent-death signal, SIGTERM as a request to stop (the loop in
pyray._private.server sees it), the log format, and a fast exit."""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

_term = {"requested": False}


def prctl(option, value):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def set_pdeathsig(sig=signal.SIGKILL):
    """This process gets `sig` when its parent dies."""
    prctl(PR_SET_PDEATHSIG, int(sig))


def _on_term(signum, frame):
    _term["requested"] = True


def term_requested() -> bool:
    """Whether the process was asked to stop (SIGTERM)."""
    return _term["requested"]


def start(die_with_parent=False):
    """The start of a daemon's main(): SIGTERM (also sent when the parent
    dies, with `die_with_parent`) asks the loop to stop, SIGINT (a ^C meant
    for the driver in the same terminal) is ignored, logs go to stderr."""
    if die_with_parent:
        set_pdeathsig(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def exit_now(code=0):
    """Exits without the interpreter's teardown: tens of milliseconds for a
    process with zmq (and, in the raylet, the store) loaded, all of it on the
    driver's shutdown path.  The caller has already closed everything that
    must be closed (sockets, the store, spill files)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
