"""Everything that talks to Redis. Nothing else in the project imports redis.

Functions are intention-named and async; each takes the `Store` handle first and the rest
as keyword arguments. Key names are built in `store.keys` only.
"""

from manas360.store.client import Store, StoreUnavailable, close_store, open_store

__all__ = ["Store", "StoreUnavailable", "open_store", "close_store"]
