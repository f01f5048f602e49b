"""Process-wide state of pyray, in one place."""
from __future__ import annotations

import threading


class _Context:
    def __init__(self):
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        self.core_worker = None
        self.mode = None            # "driver" | "worker" | None
        self.node = None            # dict: node_id, raylet_addr, gcs_addr, store_name, ...
        self.cluster = None         # LocalCluster started by this driver, if any
        self.namespace = None
        self.job_id = None
        self.config = None
        self.session_dir = None


ctx = _Context()
