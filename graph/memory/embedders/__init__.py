"""Embedding models behind one interface: fastembed (local ONNX) and OpenAI-compatible APIs."""

from __future__ import annotations

from graph.errors import ConfigError
from graph.memory.embedders.base import Embedder
from graph.settings import MemorySettings

__all__ = ["Embedder", "create_embedder"]

_FORMS = "unset, 'fastembed:<model>' or 'openai:<model>'"


def create_embedder(settings: MemorySettings) -> Embedder | None:
    """The embedder EMBEDDER names, or None when it is unset.

    Each kind is imported only when it is asked for, so fastembed (an optional extra) is
    never loaded by a server that does not use it. A value that names no embedder raises
    ConfigError: the server refuses to start rather than run without the model it was told to.
    """
    spec = (settings.embedder or "").strip()
    if not spec:
        return None
    kind, _, model = spec.partition(":")
    model = model.strip()
    if kind == "openai" and model:
        from graph.memory.embedders.openai import OpenAIEmbedder

        return OpenAIEmbedder.from_settings(model, settings)
    if kind == "fastembed" and model:
        from graph.memory.embedders.fastembed import FastEmbedEmbedder

        return FastEmbedEmbedder.from_settings(model, settings)
    raise ConfigError(f"EMBEDDER={spec!r} is not understood: it must be {_FORMS}")
