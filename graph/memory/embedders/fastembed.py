"""A local ONNX model through fastembed, Qdrant's embedding library (the `embed` extra).

The model is one fastembed lists, its files read from EMBED_MODEL_PATH or fetched once into
fastembed's cache on first use; or, with EMBED_MODEL_PATH, any sentence-transformers ONNX
export (model.onnx, tokenizer.json, tokenizer_config.json, config.json with hidden_size),
registered with fastembed as a custom model with mean pooling and normalised vectors.
Inference is CPU-bound: it runs in one worker thread, one call at a time, each bounded by
EMBED_TIMEOUT_SECONDS; callers beyond a short queue are refused at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graph.errors import ConfigError, StoreOverloaded, StoreTimeout
from graph.memory.embedders._utils import Failure, checked, measured
from graph.memory.embedders.base import Embedder
from graph.settings import MemorySettings
from graph.store.remote.admission import Admission

if TYPE_CHECKING:
    from fastembed import TextEmbedding

_PROBE_TEXT = "dimension probe"


class FastEmbedEmbedder(Embedder):
    def __init__(
        self,
        model: str,
        *,
        model_path: Path | None = None,
        timeout_seconds: float = 10.0,
        max_queue: int = 64,
    ) -> None:
        self._text_embedding = _text_embedding(model)
        self.name = f"fastembed:{model}"
        self._model_name = model
        self._model_path = model_path
        if not _is_listed(self._text_embedding, model):
            if model_path is None:
                raise ConfigError(
                    f"EMBEDDER=fastembed:{model} names a model fastembed does not list; "
                    "set EMBED_MODEL_PATH to a directory with its ONNX export, or pick one "
                    "of TextEmbedding.list_supported_models()"
                )
            _register(self._text_embedding, model, model_path)
        self._timeout = timeout_seconds
        # One thread: onnxruntime already uses every core for one call, and a second call
        # alongside it would only make both slower.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastembed")
        self._admission = Admission(f"embedder:{self.kind}", limit=1, queue=max_queue)
        self._embedding: TextEmbedding | None = None
        self._dimension: int | None = None

    @classmethod
    def from_settings(cls, model: str, settings: MemorySettings) -> FastEmbedEmbedder:
        return cls(
            model,
            model_path=settings.embed_model_path,
            timeout_seconds=settings.embed_timeout_seconds,
        )

    async def load(self) -> int:
        """Load (and on first use, fetch) the model; not bounded by EMBED_TIMEOUT_SECONDS,
        since a first download takes as long as it takes."""
        with measured(self.kind, starting=f"EMBEDDER {self.name}"):
            loop = asyncio.get_running_loop()
            try:
                self._embedding = await loop.run_in_executor(self._thread, self._open)
            except Exception as exc:
                where = (
                    f"EMBED_MODEL_PATH {self._model_path}"
                    if self._model_path is not None
                    else "fastembed's cache or a download"
                )
                raise Failure(
                    "load", f"the model cannot be loaded from {where}: {_said(exc)}"
                ) from None
            [vector] = await self._run(lambda model: model.embed([_PROBE_TEXT]), 1)
        self._dimension = len(vector)
        return self._dimension

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        batch = list(texts)
        with measured(self.kind):
            return await self._run(lambda model: model.embed(batch), len(batch))

    async def embed_query(self, text: str) -> list[float]:
        with measured(self.kind):
            [vector] = await self._run(lambda model: model.query_embed(text), 1)
        return vector

    async def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def _open(self) -> TextEmbedding:
        path = str(self._model_path) if self._model_path is not None else None
        model: TextEmbedding = self._text_embedding(self._model_name, specific_model_path=path)
        return model

    async def _run(
        self, work: Callable[[TextEmbedding], Iterable[Any]], count: int
    ) -> list[list[float]]:
        model = self._embedding
        if model is None:
            raise Failure("not_loaded")
        deadline = time.monotonic() + self._timeout
        loop = asyncio.get_running_loop()
        try:
            async with self._admission.slot(deadline):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    vectors = await loop.run_in_executor(self._thread, _all, work, model)
        except StoreOverloaded:
            raise Failure("overloaded") from None
        except (StoreTimeout, TimeoutError):
            raise Failure(
                "timeout", f"no answer within EMBED_TIMEOUT_SECONDS ({self._timeout:g}s)"
            ) from None
        except Failure:
            raise
        except Exception:
            raise Failure("inference") from None
        return checked(vectors, count, self._dimension)


def _said(exc: BaseException, limit: int = 200) -> str:
    """The first line of a local library's error (fastembed's, onnxruntime's: no
    credential), at most limit characters, or its type when it says nothing."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else f"{text[:limit]}..."


def _all(work: Callable[[TextEmbedding], Iterable[Any]], model: TextEmbedding) -> list[Any]:
    """Run in the worker thread: fastembed's embed() is a lazy generator."""
    return list(work(model))


def _text_embedding(model: str) -> type[TextEmbedding]:
    """fastembed's TextEmbedding, imported only when EMBEDDER asks for fastembed."""
    try:
        from fastembed import TextEmbedding
    except ImportError:
        raise ConfigError(
            f"EMBEDDER=fastembed:{model} needs the fastembed package: pip install -e '.[embed]'"
        ) from None
    return TextEmbedding


def _is_listed(text_embedding: type[TextEmbedding], model: str) -> bool:
    listed = text_embedding.list_supported_models()
    return model.lower() in {str(description["model"]).lower() for description in listed}


def _register(text_embedding: type[TextEmbedding], model: str, path: Path) -> None:
    """Describe an unlisted sentence-transformers ONNX export to fastembed."""
    from fastembed.common.model_description import ModelSource, PoolingType

    try:
        config = json.loads((path / "config.json").read_text())
        dimension = int(config["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"EMBED_MODEL_PATH={path} has no readable config.json with hidden_size, "
            f"which EMBEDDER=fastembed:{model} (a model fastembed does not list) needs"
        ) from None
    text_embedding.add_custom_model(
        model,
        pooling=PoolingType.MEAN,
        normalization=True,
        sources=ModelSource(hf=model),
        dim=dimension,
        model_file="model.onnx",
    )
