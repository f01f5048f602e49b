"""pyray.timeline(): the cluster's task records as a Chrome trace
(chrome://tracing, Perfetto); docs/state.md."""
from __future__ import annotations

import json


def timeline(filename=None):
    """Every recorded task and actor call as a Chrome trace "X" event (pid:
    its node, tid: its worker, ts/dur in microseconds).  Returns the list,
    or writes it to `filename` as JSON and returns None (as Ray)."""
    from pyray._private import state
    events = state.timeline_events()
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None
