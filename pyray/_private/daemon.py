"""What the daemons (GCS, raylet) share at the end of their life."""
from __future__ import annotations

import logging
import os
import sys


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
