"""Metrics, HTTP metrics, JSON logs and the batched recording of operations."""
