"""`pyray.remote_function`, as Ray's `ray.remote_function`: the class of a
`@pyray.remote` function."""
from pyray._private.remote_function import RemoteFunction

__all__ = ["RemoteFunction"]
