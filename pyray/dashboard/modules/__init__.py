"""The dashboard's route modules: each ``<name>.py`` here defines
``routes(dashboard)`` (a list of starlette routes; ``dashboard`` is a
pyray.dashboard.server.Dashboard) and optionally ``OPEN_ON_LOOPBACK`` (paths
served without the cluster token when the dashboard listens on loopback).
The server loads every module found here; adding one needs no other change."""
