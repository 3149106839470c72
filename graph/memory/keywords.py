"""BM25 weights of texts, computed in this process with qdrant-edge's Bm25: no model files,
no other service, and the same vectors whichever store keeps them.

A memory's text becomes a sparse vector of term-frequency weights (embed_document); a
recall's text one of weight 1 per distinct term (embed_query). The store keeps them under
a sparse vector with the IDF modifier, so the engine supplies the inverse document
frequency from what it holds: their product is BM25.

Tokens: the multilingual tokenizer (Unicode word boundaries; Chinese and Japanese are
segmented into words by dictionary, Korean on spaces), lowercased, accents folded to ASCII
("Straße" and "strasse", "café" and "cafe" match), English stopwords dropped and the
English Snowball stemmer applied to every word (harmless for other languages: a query
is stemmed the same way as the texts it is matched against).

Numbers standing alone ("1815", "order 48213", "COVID-19") are words too: the tokenizer
drops a token of digits only, so each is given a letter first (`as_words`). Digits inside
a word ("v2", "12ab") were kept already and are left as they are, so every token a text
had before still comes out the same.
"""

from __future__ import annotations

import re

from qdrant_edge import Bm25, Bm25Config, TokenizerType

from graph.store.models import SparseVector

# Memories are short notes, not pages: the length they are normalised against.
AVERAGE_LENGTH = 32.0
K1 = 1.2
B = 0.75

_model = Bm25(
    Bm25Config(
        k=K1,
        b=B,
        avg_len=AVERAGE_LENGTH,
        tokenizer=TokenizerType.Multilingual,
        ascii_folding=True,
    )
)


# A run of digits with no letter, digit or underscore on either side.
_LONE_NUMBER = re.compile(r"(?<!\w)(\d+)(?!\w)")


def as_words(text: str) -> str:
    """Each number standing alone prefixed with a letter, which the tokenizer keeps."""
    return _LONE_NUMBER.sub(r"n\1", text)


def document_keywords(text: str) -> SparseVector:
    vector = _model.embed_document(as_words(text))
    return SparseVector(vector.indices, vector.values)  # new lists on each read


def query_keywords(text: str) -> SparseVector:
    vector = _model.embed_query(as_words(text))
    return SparseVector(vector.indices, vector.values)
