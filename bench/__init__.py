"""The benchmark harness: the memory server against a plain JSON API (see run.py)."""
