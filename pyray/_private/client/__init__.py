"""The client server and its client (docs/client.md).

`pyray.init("pyray://host:port")` (or "ray://") connects a process outside
the cluster to the client server on the head node over one authenticated
tcp connection; server.py is that server (a driver of the cluster), worker.py
the client's side (a stand-in for the core worker the public API calls).
"""
