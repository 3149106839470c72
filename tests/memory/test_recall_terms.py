"""A recall's BM25 vector carries at most MAX_QUERY_TERMS distinct terms: the engine holds
the GIL for the whole of its search (worker thread or not), and the search's cost grows
with the query's terms times the memories it scores. The attack: memories of thousands of
distinct words, recalled by those words, held the event loop for the whole search (on a
busy 2-core machine, 600 memories of 4,500 words: ~300 ms a recall; 1,050 of 3,000 words:
~300 ms). A question of a few hundred words is sent whole and ranks as before."""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from graph.memory import keywords
from graph.memory.keywords import (
    INLINE_KEYWORD_BYTES,
    MAX_QUERY_TERMS,
    _model,
    as_words,
    keywords_of_query,
    query_keywords,
)
from graph.memory.service import MemoryService, Mode, NewMemory, Recall
from graph.store.edge import EdgeStore
from graph.store.models import MemoryRecord, RecallMode, RecallRequest, SparseVector
from tests.conftest import Runner
from tests.helpers import longest_stall, open_memory_service

TENANT = "t1"
COLLECTION = "notes"
# The adversarial data, smaller than the probe's but with longer texts (4,500 words of 6
# letters: ~31 KB, within the 32 KB a text may have), and as many short ones: unbounded,
# a recall by those words held the loop for 0.27-0.34 s on a busy 2-core machine
# (0.13 s with 400 of each); bounded, for 9-15 ms.
SHARED_MEMORIES = 600
SHARED_WORDS = 4_500
MAX_STALL_SECONDS = 0.06


def random_words(rng: random.Random, count: int, letters: int = 6) -> list[str]:
    return ["".join(rng.choices(string.ascii_lowercase, k=letters)) for _ in range(count)]


def raw_query(text: str) -> SparseVector:
    """A query's vector as it was before the bound: every distinct term."""
    vector = _model.embed_query(as_words(text))
    return SparseVector(vector.indices, vector.values)


def terms_of(text: str) -> set[int]:
    return set(_model.embed_query(as_words(text)).indices)


@pytest.fixture
def service(tmp_path: Path, run: Runner) -> Iterator[MemoryService]:
    store = EdgeStore(data_dir=tmp_path / "data")
    yield from open_memory_service(store, tmp_path, run, TENANT, COLLECTION)


def test_a_query_of_thousands_of_words_sends_at_most_the_bound() -> None:
    words = random_words(random.Random(3), 3_000)
    text = " ".join(words)
    vector = query_keywords(text)
    assert len(raw_query(text).indices) > 2_900
    assert len(vector.indices) == MAX_QUERY_TERMS
    assert vector.values == [1.0] * MAX_QUERY_TERMS
    assert vector.indices == sorted(vector.indices)
    assert set(vector.indices) <= terms_of(text)
    # The same through keywords_of_query, long text or short (inline: at most 4 KB).
    assert asyncio.run(keywords_of_query(text)) == vector
    short = " ".join(random_words(random.Random(4), 600, letters=5))
    assert len(short) <= INLINE_KEYWORD_BYTES
    assert len(raw_query(short).indices) > MAX_QUERY_TERMS
    assert asyncio.run(keywords_of_query(short)) == query_keywords(short)
    assert len(query_keywords(short).indices) == MAX_QUERY_TERMS


def test_a_long_query_keeps_its_repeated_terms_then_its_first() -> None:
    words = random_words(random.Random(5), 1_000)
    text = " ".join([*words, "zebra zebra zebra", *words[900:], "walrus walrus"])
    kept = set(query_keywords(text).indices)
    assert len(kept) == MAX_QUERY_TERMS
    # Repeated in the text: the repeated words (twice or more) come before any other.
    repeated = terms_of(" ".join(words[900:]))
    assert terms_of("zebra walrus") | repeated <= kept
    # Then the terms occurring first: the beginning of the text is kept, its middle not.
    unique = words[:900]
    assert terms_of(" ".join(unique[:100])) - repeated <= kept
    assert not (terms_of(" ".join(unique[300:])) - repeated) & kept


def test_a_recall_by_thousands_of_words_does_not_stall_the_loop(
    service: MemoryService, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(9)
    vocabulary = random_words(rng, SHARED_WORDS)
    memories = []
    for i in range(SHARED_MEMORIES):
        rng.shuffle(vocabulary)
        memories.append(NewMemory(id=i + 1, text=" ".join(vocabulary)))
    memories.extend(
        NewMemory(id=10_000 + i, text=" ".join(random_words(rng, 20)))
        for i in range(SHARED_MEMORIES)
    )
    for start in range(0, len(memories), 200):
        run(service.remember(TENANT, COLLECTION, memories[start : start + 200]))
    sent: list[int] = []
    recall = service.store.recall

    async def recorded(tenant: str, collection: str, request: RecallRequest) -> list[MemoryRecord]:
        assert request.keywords is not None
        sent.append(len(request.keywords.indices))
        return await recall(tenant, collection, request)

    monkeypatch.setattr(service.store, "recall", recorded)
    asked = Recall(text=" ".join(vocabulary), mode=Mode.KEYWORD, limit=66)
    run(service.recall(TENANT, COLLECTION, asked))  # warm
    for _ in range(2):
        found, stall = run(longest_stall(lambda: service.recall(TENANT, COLLECTION, asked)))
        assert len(found) == 66
        assert {record.id for record in found} <= set(range(1, SHARED_MEMORIES + 1))
        assert stall < MAX_STALL_SECONDS, f"the loop stalled for {stall:.3f} s"
    assert sent == [MAX_QUERY_TERMS] * 3


def question(rng: random.Random, vocabulary: list[str], words: int) -> str:
    return " ".join(rng.choices(vocabulary, k=words))


def test_a_question_of_a_few_hundred_words_ranks_as_before(
    service: MemoryService, run: Runner
) -> None:
    rng = random.Random(13)
    vocabulary = random_words(rng, 220, letters=7)
    memories = [
        NewMemory(id=i + 1, text=question(rng, vocabulary, rng.randint(5, 60))) for i in range(300)
    ]
    run(service.remember(TENANT, COLLECTION, memories))
    now = service.clock()
    service.clock = lambda: now
    for words in (3, 40, 400):
        text = question(rng, vocabulary, words)
        before = raw_query(text)
        if words == 400:
            assert 150 < len(before.indices) <= MAX_QUERY_TERMS
        assert query_keywords(text) == before
        assert run(keywords_of_query(text)) == before
        found = run(
            service.recall(TENANT, COLLECTION, Recall(text=text, mode=Mode.KEYWORD, limit=50))
        )
        request = RecallRequest(RecallMode.KEYWORD, limit=50, now=now, keywords=before)
        expected = run(service.store.recall(TENANT, COLLECTION, request))
        assert len(found) == 50
        assert [(r.id, r.score) for r in found] == [(r.id, r.score) for r in expected]


def test_the_bound_is_applied_where_queries_are_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keywords, "MAX_QUERY_TERMS", 3)
    assert len(query_keywords("apple banana cherry falcon garden").indices) == 3
    assert query_keywords("apple banana cherry") == raw_query("apple banana cherry")
