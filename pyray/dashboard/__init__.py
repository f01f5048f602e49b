"""The dashboard: an HTTP server (starlette, served by uvicorn) in a process
of its own on the head node, the host of route modules
(pyray/dashboard/modules/*.py) such as job submission.  Started by
pyray.init() and `pyray start --head` when starlette and uvicorn are
installed (pip install 'pyray[dashboard]'); see docs/dashboard.md."""
