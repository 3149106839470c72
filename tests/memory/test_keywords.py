"""Keyword recall is BM25: the same ranking as a reference implementation (rank-bm25, with
the IDF Qdrant and Lucene use), on both adapters; accents fold, CJK is split into words."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from rank_bm25 import BM25Okapi

from graph.memory.keywords import (
    AVERAGE_LENGTH,
    K1,
    B,
    _model,
    as_words,
    document_keywords,
    query_keywords,
)
from graph.store.base import VectorStore
from graph.store.models import RecallMode, RecallRequest
from tests.store.conftest import TENANT
from tests.store.test_memory_contract import memory

if TYPE_CHECKING:
    from tests.store.conftest import Runner

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
# No stopwords, no two words with one stem: the tokenizers agree on every token.
VOCABULARY = [
    "apple",
    "banana",
    "cherry",
    "falcon",
    "garden",
    "harbor",
    "island",
    "jungle",
    "kettle",
    "lantern",
    "meadow",
    "nebula",
    "orchid",
    "pepper",
    "quartz",
    "rocket",
    "saddle",
    "tunnel",
    "velvet",
    "walnut",
    "yogurt",
    "zephyr",
    "bridge",
    "canyon",
    "dragon",
    "engine",
    "forest",
    "glacier",
    "hammer",
    "ivory",
]
QUERIES = ["apple", "falcon garden", "quartz rocket saddle", "nebula", "ivory hammer apple"]


class ReferenceBM25(BM25Okapi):  # type: ignore[misc]
    """BM25 with idf = ln(1 + (N - n + 0.5) / (n + 0.5)), as Qdrant's IDF modifier."""

    def _calc_idf(self, nd: dict[str, int]) -> None:
        for word, freq in nd.items():
            self.idf[word] = math.log(1 + (self.corpus_size - freq + 0.5) / (freq + 0.5))


def corpus() -> list[list[str]]:
    rng = random.Random(7)
    return [rng.choices(VOCABULARY, k=rng.randint(3, 14)) for _ in range(80)]


def recall(store: VectorStore, collection: str, run: Runner, text: str, limit: int = 10) -> list:  # type: ignore[type-arg]
    request = RecallRequest(RecallMode.KEYWORD, limit=limit, now=NOW, keywords=query_keywords(text))
    return run(store.recall(TENANT, collection, request))


def test_keyword_ranking_matches_a_reference_bm25(
    store: VectorStore, collection: str, run: Runner
) -> None:
    docs = corpus()
    run(store.remember(TENANT, collection, [memory(i, " ".join(d)) for i, d in enumerate(docs)]))
    reference = ReferenceBM25(docs, k1=K1, b=B)
    reference.avgdl = AVERAGE_LENGTH  # the model's fixed average length, not the corpus's
    for query in QUERIES:
        expected = reference.get_scores(query.split())
        found = recall(store, collection, run, query, limit=5)
        assert len(found) == 5
        kth = sorted(expected, reverse=True)[4]
        for hit in found:
            # each hit scores as the reference says, and belongs to the reference's top 5
            assert hit.score == pytest.approx(expected[hit.id], rel=1e-3), query
            assert expected[hit.id] >= kth - 1e-6, query
        assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)


def test_german_and_french_words_match_with_and_without_accents(
    store: VectorStore, collection: str, run: Runner
) -> None:
    texts = {
        1: "Grüße aus der schönen Straße in München",
        2: "Le café crème est très apprécié à Paris",
        3: "Ein Spaziergang im Regen",
    }
    run(store.remember(TENANT, collection, [memory(i, t) for i, t in texts.items()]))
    for query, expected in [
        ("Straße", 1),
        ("strasse muenchen grusse", 1),
        ("München", 1),
        ("cafe creme", 2),
        ("café", 2),
        ("apprécié", 2),
        ("Spaziergang", 3),
    ]:
        assert [m.id for m in recall(store, collection, run, query)][:1] == [expected], query


def test_chinese_and_japanese_are_split_into_words(
    store: VectorStore, collection: str, run: Runner
) -> None:
    texts = {1: "我喜欢吃苹果", 2: "東京は日本の首都です", 3: "서울은 한국의 수도입니다"}
    run(store.remember(TENANT, collection, [memory(i, t) for i, t in texts.items()]))
    for query, expected in [("苹果", 1), ("喜欢", 1), ("日本", 2), ("首都", 2), ("한국의", 3)]:
        assert [m.id for m in recall(store, collection, run, query)] == [expected], query


def test_every_unicode_space_separates_words(
    store: VectorStore, collection: str, run: Runner
) -> None:
    """Text pasted from a web page or a word processor: a no-break space (U+00A0, and
    French's narrow one, U+202F), a line separator, a zero-width space between words; a
    soft hyphen, a word joiner or a bidi mark inside one, which Unicode ignores there."""
    texts = {
        1: "Ada\u00a0Lovelace wrote the first program",
        2: "Prix\u202fnet: quarante\u2028euros\u000bpayés",
        3: "ゼロ幅 zero\u200bwidth separated",
        4: "Koope\u00adration und Wort\u2060verbindung",
        5: "\u05e9\u05dc\u05d5\u05dd\u200f olam\u200e tov",
    }
    run(store.remember(TENANT, collection, [memory(i, t) for i, t in texts.items()]))
    for query, expected in [
        ("lovelace", 1),
        ("Ada", 1),
        ("prix", 2),
        ("net", 2),
        ("euros", 2),
        ("payes", 2),
        ("zero", 3),
        ("width", 3),
        ("Kooperation", 4),
        ("Wortverbindung", 4),
        ("olam", 5),
        ("\u05e9\u05dc\u05d5\u05dd", 5),
    ]:
        assert [m.id for m in recall(store, collection, run, query)] == [expected], query
    # The query is read the same way: a soft hyphen in it does not hide the word.
    assert [m.id for m in recall(store, collection, run, "Ada\u00a0Love\u00adlace")] == [1]


def test_query_weights_are_one_per_distinct_term() -> None:
    assert query_keywords("apple apple banana").values == [1.0, 1.0]
    assert document_keywords("the of and").indices == []  # stopwords only: no terms


def test_numbers_standing_alone_are_words(store: VectorStore, collection: str, run: Runner) -> None:
    """The tokenizer drops a token of digits only: a year, an order number, a version part
    could not be recalled by keywords."""
    texts = {
        1: "Ada Lovelace was born in 1815",
        2: "Order 48213 shipped on Tuesday",
        3: "notes about topic 3",
        4: "notes about topic 0",
        5: "the COVID-19 rules changed",
    }
    run(store.remember(TENANT, collection, [memory(i, t) for i, t in texts.items()]))
    for query, expected in [("1815", [1]), ("48213", [2]), ("19", [5]), ("topic 3", [3, 4])]:
        assert [m.id for m in recall(store, collection, run, query)] == expected, query


def test_numbers_add_words_and_change_none_the_text_had() -> None:
    """Stored memories keep their weights: a text with no number standing alone is
    tokenized exactly as before, and one with numbers gains their words only."""
    untouched = "v2 and 12ab, x_12 and 2026年"  # digits inside words, or beside letters
    assert as_words(untouched) == untouched
    assert document_keywords(untouched).indices == _model.embed_document(untouched).indices
    before = set(_model.embed_document("born in 1815").indices)
    after = set(document_keywords("born in 1815").indices)
    assert before < after and len(after - before) == 1
