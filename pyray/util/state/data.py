"""The state API's data as plain rows, for HTTP routes (GET
/api/v0/<resource>) and tools: ``query(resource, filters, limit, detail,
timeout, address)`` returns Ray's list-response shape ({"result": [row],
"total", "num_after_truncation", "num_filtered", "partial_failure_warning",
"warnings"}); ``get_row``, ``summarize`` and ``timeline_events`` as the
functions of pyray.util.state use them (docs/state.md)."""
from pyray._private.state import (Source, get_row, log_files, log_path,  # noqa: F401
                                  query, summarize, timeline_events)
