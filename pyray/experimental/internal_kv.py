"""The cluster's key-value store, as Ray's `ray.experimental.internal_kv`.

Keys and values are bytes (a str is encoded as UTF-8); a value lives in the
GCS (and its SQLite file, so a restarted GCS keeps it) until deleted or the
cluster stops.  `namespace` separates key spaces: the same key in two
namespaces names two values.  Every call connects to a cluster first if none
is connected, as Ray's API calls do.
"""
from __future__ import annotations

from typing import List, Optional, Union

_PREFIX = "ikv/"


def _cw():
    from pyray._private.context import ctx
    from pyray._private.remote_function import ensure_initialized
    return ctx.core_worker or ensure_initialized()


def _bytes(value, what):
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be bytes or str, got {type(value).__name__}")


def _key(key, namespace) -> str:
    # hex keeps every key a plain string in the GCS and keeps prefixes prefixes
    ns = b"" if namespace is None else _bytes(namespace, "namespace")
    return f"{_PREFIX}{ns.hex()}/{_bytes(key, 'key').hex()}"


def _rpc(op, *args):
    from pyray._private.protocol import Op
    cw = _cw()
    return cw.rpc(cw.gcs_addr, getattr(Op, op), *args)


def _internal_kv_initialized() -> bool:
    from pyray._private.context import ctx
    return ctx.core_worker is not None


def _internal_kv_get(key: Union[str, bytes], *, namespace=None) -> Optional[bytes]:
    """The value stored under `key`, or None."""
    return _rpc("KV_GET", _key(key, namespace))


def _internal_kv_exists(key: Union[str, bytes], *, namespace=None) -> bool:
    return _internal_kv_get(key, namespace=namespace) is not None


def _internal_kv_put(key: Union[str, bytes], value: Union[str, bytes], overwrite: bool = True,
                     *, namespace=None) -> bool:
    """Stores `value` under `key` (only if absent when `overwrite` is
    False).  Returns whether the key already had a value, as Ray does."""
    k = _key(key, namespace)
    v = _bytes(value, "value")
    if overwrite:
        existed = _rpc("KV_GET", k) is not None
        _rpc("KV_PUT", k, v, True)
        return existed
    return not _rpc("KV_PUT", k, v, False)


def _internal_kv_del(key: Union[str, bytes], *, del_by_prefix: bool = False,
                     namespace=None) -> int:
    """Deletes `key` (or every key starting with it); returns how many."""
    if not del_by_prefix:
        return int(bool(_rpc("KV_DEL", _key(key, namespace))))
    return sum(bool(_rpc("KV_DEL", k)) for k in _rpc("KV_KEYS", _key(key, namespace)))


def _internal_kv_list(prefix: Union[str, bytes], *, namespace=None) -> List[bytes]:
    """The keys that start with `prefix`."""
    start = len(_key(b"", namespace))
    return [bytes.fromhex(k[start:]) for k in _rpc("KV_KEYS", _key(prefix, namespace))]


def _internal_kv_reset() -> None:
    """Kept for Ray's API: the store lives in the cluster, nothing is cached here."""
