"""A GraphQL memory server for AI agents on the Qdrant engine."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("graph-memory")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
