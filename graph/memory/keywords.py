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

Off the event loop: Bm25 holds the GIL for the whole of a call, which grows with the text
(a 32 KB text of CJK takes 7-15 ms), so a batch of long texts converted inline would stall
every other request for as long as the whole batch takes. `keywords_of_documents` and
`keywords_of_query` convert more than INLINE_KEYWORD_BYTES of text in a worker thread,
text by text, in pieces of at most PIECE_KEYWORD_BYTES: the loop gets the GIL back
between two texts, so it waits for one text at most, never for the batch. (Once per
process, the first Chinese and the first Japanese text also load the tokenizer's
dictionary for that language: 0.15-0.3 s each, holding the GIL, about 67 MB together.)
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

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


# Up to this much text (UTF-8 bytes, the whole batch) is converted on the event loop.
# Measured on a busy 2-core machine (Python 3.11, qdrant-edge 0.9): embed_document costs
# 30-60 us per call plus about 0.15 ms per KB of English and 0.2-0.3 ms per KB of CJK
# (4 KB: 0.6-1.3 ms); a hop to a worker thread (asyncio.to_thread) costs 50-100 us, more
# than the whole work for a 200-byte text. So the common batch, one or a few short notes,
# stays inline, and no inline conversion holds the loop for much more than a millisecond.
INLINE_KEYWORD_BYTES = 4 * 1024
# Text per hop to a worker thread (about 40-80 ms of work): each hop's ~0.1 ms is lost in
# it, and a batch that is abandoned (its request cancelled) stops after the current piece.
PIECE_KEYWORD_BYTES = 256 * 1024


def _size(text: str) -> int:
    """The text's length in UTF-8 bytes (isascii is a flag check: no encoding for ASCII)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _documents(texts: Sequence[str]) -> list[SparseVector]:
    """Text by text: between two calls a worker thread gives the GIL to the loop when it
    asks (during one it cannot)."""
    return [document_keywords(text) for text in texts]


async def keywords_of_documents(texts: Sequence[str]) -> list[SparseVector]:
    """document_keywords of each text, in order; a large batch off the event loop."""
    sizes = [_size(text) for text in texts]
    if sum(sizes) <= INLINE_KEYWORD_BYTES:
        return _documents(texts)
    vectors: list[SparseVector] = []
    start = 0
    while start < len(texts):
        end, piece = start, 0
        while end < len(texts) and (end == start or piece + sizes[end] <= PIECE_KEYWORD_BYTES):
            piece += sizes[end]
            end += 1
        vectors.extend(await asyncio.to_thread(_documents, texts[start:end]))
        start = end
    return vectors


async def keywords_of_query(text: str) -> SparseVector:
    """query_keywords of the text; a long text off the event loop."""
    if _size(text) <= INLINE_KEYWORD_BYTES:
        return query_keywords(text)
    return await asyncio.to_thread(query_keywords, text)
