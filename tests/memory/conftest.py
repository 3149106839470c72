"""The store fixtures of tests/store, for the memory tests that run on every adapter."""

from tests.store.conftest import collection, names, run, store

__all__ = ["collection", "names", "run", "store"]
