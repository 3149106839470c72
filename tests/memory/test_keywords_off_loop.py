"""A large remember computes its BM25 keywords off the event loop, in bounded pieces: a
tenant's batch of long texts must not stall the server's other requests (qdrant-edge's
Bm25 holds the GIL for a whole text, so the work runs text by text in a worker thread,
where the loop gets the GIL back between texts). Small batches stay inline; keyword
recall finds what was remembered either way.

The stall is measured with the engine write left out (KeptWrites): writing such a batch
has a cost of its own, in graph/store/edge, that this test is not about."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from graph.memory import keywords
from graph.memory.keywords import INLINE_KEYWORD_BYTES
from graph.memory.service import MemoryService, Mode, NewMemory, Recall
from graph.store.edge import EdgeStore
from graph.store.models import MemoryPoint, SparseVector
from tests.conftest import Runner
from tests.helpers import longest_stall, open_memory_service

TENANT = "t1"
COLLECTION = "notes"
# The attack: many texts of the largest size allowed (MAX_MEMORY_TEXT_BYTES, 32 KB), in
# CJK, which costs the tokenizer the most per byte. Inline this held the loop for about
# 1-2 s on a 2-core machine; off the loop the longest stall was some tens of ms.
LONG_TEXTS = 120
LONG_TEXT_CHARS = 32 * 1024 // 3 - 20  # CJK characters are 3 bytes in UTF-8
MAX_STALL_SECONDS = 0.3
# Words that mark each text for keyword recall, and that no other text has.
MARKERS = ["quokka", "zeppelin", "marmalade", "trombone", "pelican"]


def cjk(rng: random.Random, chars: int) -> str:
    return "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(chars))


def long_memories() -> list[NewMemory]:
    rng = random.Random(11)
    return [
        NewMemory(
            id=i + 1,
            text=f"{MARKERS[i] if i < len(MARKERS) else 'filler'} {cjk(rng, LONG_TEXT_CHARS)}",
        )
        for i in range(LONG_TEXTS)
    ]


# The first CJK text a process converts loads the tokenizer's dictionary (~0.2 s, once):
# loaded here, so that the stall measured is the batch's.
keywords.document_keywords(cjk(random.Random(0), 100))


class KeptWrites(EdgeStore):
    """The embedded store, but remember keeps the memories instead of writing them."""

    kept: list[MemoryPoint]

    async def remember(self, tenant: str, collection: str, memories: Sequence[MemoryPoint]) -> int:
        self.kept = list(memories)
        return len(memories)


@pytest.fixture
def service(tmp_path: Path, run: Runner) -> Iterator[MemoryService]:
    yield from open_memory_service(
        EdgeStore(data_dir=tmp_path / "data"), tmp_path, run, TENANT, COLLECTION
    )


@pytest.fixture
def keeping(tmp_path: Path, run: Runner) -> Iterator[MemoryService]:
    yield from open_memory_service(
        KeptWrites(data_dir=tmp_path / "data"), tmp_path, run, TENANT, COLLECTION
    )


def keywords_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread of each document_keywords call from now on."""
    threads: list[int] = []
    original = keywords.document_keywords

    def recorded(text: str) -> SparseVector:
        threads.append(threading.get_ident())
        return original(text)

    monkeypatch.setattr(keywords, "document_keywords", recorded)
    return threads


def test_a_large_batch_does_not_stall_the_loop(keeping: MemoryService, run: Runner) -> None:
    memories = long_memories()
    ids, stall = run(longest_stall(lambda: keeping.remember(TENANT, COLLECTION, memories)))
    assert ids == list(range(1, LONG_TEXTS + 1))
    assert stall < MAX_STALL_SECONDS, f"the loop stalled for {stall:.3f} s"
    # The same keywords as inline, in the same order.
    assert isinstance(keeping.store, KeptWrites)
    kept = keeping.store.kept
    assert [point.id for point in kept] == ids
    for point, memory in zip(kept, memories, strict=True):
        assert point.keywords == keywords.document_keywords(memory.text)


def test_a_large_batch_is_converted_in_worker_threads(
    service: MemoryService, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = keywords_threads(monkeypatch)
    loop_thread = threading.get_ident()  # run() drives the loop in this thread
    run(service.remember(TENANT, COLLECTION, long_memories()[:10]))
    assert len(threads) == 10
    assert loop_thread not in threads


def test_a_small_batch_stays_on_the_loop(
    service: MemoryService, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = keywords_threads(monkeypatch)
    memories = [NewMemory(id=i, text=f"short note {i} about the garden") for i in range(1, 4)]
    assert sum(len(m.text.encode()) for m in memories) < INLINE_KEYWORD_BYTES
    run(service.remember(TENANT, COLLECTION, memories))
    assert threads == [threading.get_ident()] * 3


def test_keyword_recall_finds_a_large_batch(service: MemoryService, run: Runner) -> None:
    memories = long_memories()
    run(service.remember(TENANT, COLLECTION, memories))
    for i, marker in enumerate(MARKERS):
        found = run(service.recall(TENANT, COLLECTION, Recall(text=marker, mode=Mode.KEYWORD)))
        assert [record.id for record in found] == [i + 1]
        assert found[0].text == memories[i].text
    # A long recall text (converted off the loop too) finds by its CJK words.
    found = run(
        service.recall(TENANT, COLLECTION, Recall(text=memories[7].text, mode=Mode.KEYWORD))
    )
    assert found[0].id == 8


def test_keyword_recall_after_a_small_batch(service: MemoryService, run: Runner) -> None:
    run(
        service.remember(
            TENANT,
            COLLECTION,
            [NewMemory(id=1, text="the falcon over the harbor"), NewMemory(id=2, text="garden")],
        )
    )
    found = run(service.recall(TENANT, COLLECTION, Recall(text="falcon", mode=Mode.KEYWORD)))
    assert [record.id for record in found] == [1]
