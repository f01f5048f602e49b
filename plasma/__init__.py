"""plasma: a shared-memory object store with zero-copy reads.

    store = plasma.Store.create(capacity=1 << 30, spill_dir="/tmp/spill")
    client = plasma.connect(store.name)        # from any process on this machine
    client.put(oid, numpy_array)               # oid: 20 bytes
    arr = np.frombuffer(client.get(oid))       # zero-copy, read-only, pinned while alive
"""
from plasma.client import Client, Store, connect
from plasma.errors import (GetTimeoutError, ObjectExistsError, ObjectLostError,
                           ObjectNotFoundError, ObjectSealedError, ObjectStoreFullError,
                           PlasmaError, StoreClosedError, StoreNotFoundError,
                           TooManyClientsError)
from plasma.spill import SpillPolicy
from plasma._store import OID_SIZE, PlasmaBuffer, copy_into

__all__ = [
    "Store", "Client", "connect", "SpillPolicy", "PlasmaBuffer", "OID_SIZE", "copy_into",
    "PlasmaError", "ObjectStoreFullError", "GetTimeoutError", "ObjectExistsError",
    "ObjectNotFoundError", "ObjectSealedError", "ObjectLostError", "StoreNotFoundError",
    "StoreClosedError", "TooManyClientsError",
]
