"""The state API's data as plain rows, for HTTP routes (GET
/api/v0/<resource>) and tools: ``query(resource, filters, limit, detail,
timeout, address)`` returns Ray's list-response shape ({"result": [row],
"total", "num_after_truncation", "num_filtered", "partial_failure_warning",
"warnings"}); ``get_row``, ``summarize`` and ``timeline_events`` as the
functions of pyray.util.state use them; ``http_get(path, params)`` answers
Ray's state routes whole: (status, JSON body) (docs/state.md)."""
from pyray._private.state import (LIST_ROUTES, Source, get_row, http_get,  # noqa: F401
                                  log_files, log_path, query, summarize, task_spans,
                                  timeline_events)
