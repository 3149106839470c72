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

Invisible characters are read as Unicode's word boundaries have them (`as_words` too): the
tokenizer splits on an ordinary space but not on a no-break space (U+00A0, U+202F), a line
separator or a zero-width space, and keeps a soft hyphen, a word joiner or a bidi mark
inside the word it sits in, so "Ada\u00a0Lovelace" had no word "lovelace". Every space is
read as a space and every invisible format character but the zero-width non-joiner (which
the tokenizer splits on already) as nothing; a text without them comes out the same.

Off the event loop: Bm25 holds the GIL for the whole of a call, which grows with the text
(a 32 KB text of CJK takes 7-15 ms), so a batch of long texts converted inline would stall
every other request for as long as the whole batch takes. `keywords_of_documents` and
`keywords_of_query` convert more than INLINE_KEYWORD_BYTES of text in a worker thread,
text by text, in pieces of at most PIECE_KEYWORD_BYTES: the loop gets the GIL back
between two texts, so it waits for one text at most, never for the batch. (Once per
process, the first Chinese and the first Japanese text also load the tokenizer's
dictionary for that language: 0.15-0.3 s each, holding the GIL, about 67 MB together.)

A recall's terms are bounded (MAX_QUERY_TERMS): the engine's BM25 search holds the GIL
for the whole call, worker thread or not, and its cost grows with the query's distinct
terms times the memories it scores, so a query of thousands of distinct words stalled
every other request for as long as its search took. A query with more distinct terms
keeps the MAX_QUERY_TERMS most useful (`useful_terms`); a question of a few hundred words
has fewer and is sent whole, as before.
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
# Spaces the tokenizer does not split on (every Unicode space but the ASCII ones it does),
# and the zero-width space, which separates words as a space does.
_SPACE_CHARACTERS = "\x0b\x0c\x1c-\x1f\x85\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000"
# Format characters (Cf, as of Unicode 14), which Unicode ignores inside a word: the soft
# hyphen, the zero-width joiner, bidi marks, the word joiner, the byte order mark... but the
# zero-width non-joiner (U+200C), which the tokenizer splits on (as Persian writes
# compounds), and the zero-width space (above).
_FORMAT_CHARACTERS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200d-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
_SPACES = re.compile(f"[{_SPACE_CHARACTERS}]")
_INVISIBLE = re.compile(f"[{_FORMAT_CHARACTERS}]")
# A character that shows: no space and no format character (found at once in a text that
# has one, where visible() would read the whole text).
_SHOWS = re.compile(f"[^\\s{_SPACE_CHARACTERS}{_FORMAT_CHARACTERS}\u200c]")
_ASCII_SPACES = "\x0b\x0c\x1c\x1d\x1e\x1f"


def visible(text: str) -> str:
    """text with every space a plain one and no invisible format character."""
    if text.isascii():  # the common case, and a scan of it by _INVISIBLE costs ~25 us/KB
        if not any(space in text for space in _ASCII_SPACES):
            return text
        return _SPACES.sub(" ", text)
    return _INVISIBLE.sub("", _SPACES.sub(" ", text))


def blank(text: str) -> bool:
    """Whether text is empty, or only spaces and invisible characters (zero-width ones)."""
    return _SHOWS.search(text) is None


def as_words(text: str) -> str:
    """The text as the tokenizer should read it: visible, and each number standing alone
    prefixed with a letter, which the tokenizer keeps."""
    return _LONE_NUMBER.sub(r"n\1", visible(text))


def document_keywords(text: str) -> SparseVector:
    vector = _model.embed_document(as_words(text))
    return SparseVector(vector.indices, vector.values)  # new lists on each read


def query_keywords(text: str) -> SparseVector:
    """Weight 1 for each distinct term of text, at most MAX_QUERY_TERMS of them."""
    words = as_words(text)
    vector = _model.embed_query(words)
    if len(vector.indices) <= MAX_QUERY_TERMS:
        return SparseVector(vector.indices, vector.values)
    return useful_terms(words, vector.indices)


# At most this many distinct terms go to the engine in a recall's BM25 vector. Measured on
# a busy 2-core machine (qdrant-edge 0.9), the engine holds the GIL for the whole query,
# and with the tenant's filter (below 5,000 memories, apparently the sparse index's
# full-scan threshold) it scores each memory the filter passes term by term (the same
# search without the filter: 5 ms, with it: 270 ms): over 1,050 memories of 3,000 words
# (plus 1,050 short ones), 3,000 query terms took 320 ms, 1,000 took 65 ms, 300 took
# 13 ms, 100 took 5 ms; over 2,000 such memories 512 terms took 55-60 ms and 256 took 22-30 ms; over
# 2,450 (4,900 memories in all, just under the threshold) 256 terms took 30-55 ms, and
# 128 no less (what remains is per memory scored, not per term). So a recall holds the
# loop for some tens of ms at most, and a question of a few hundred words (100-200
# distinct terms after stopwords and stemming; 1,000 words of the GPL have 224) is sent
# whole.
MAX_QUERY_TERMS = 256
# The text is read in pieces of about this many characters (cut at a space where there is
# one) to find the order in which its terms first occur.
_ORDER_PIECE_CHARS = 512


def useful_terms(words: str, indices: Sequence[int]) -> SparseVector:
    """MAX_QUERY_TERMS of the query terms indices (words' terms), weight 1 each.

    The engine supplies IDF, so rarity is unknown here: the terms kept are those the query
    repeats most (a long text's repeated words are its subject), and among terms repeated
    as often, those occurring first (a question states its subject early; a text cut after
    its 256th distinct word would keep these). Repeats are read from embed_document, whose
    weights grow with a term's count in the text; first occurrences piece by piece, in the
    order of the pieces (within one, by index), which tokenizes the text once more."""
    document = _model.embed_document(words)
    counts = dict(zip(document.indices, document.values, strict=True))
    wanted = set(indices)
    first: dict[int, None] = {}
    start = 0
    while start < len(words) and len(first) < len(wanted):
        end = start + _ORDER_PIECE_CHARS
        if end < len(words):
            space = words.rfind(" ", start + 1, end)
            end = space if space > start else end
        for index in _model.embed_query(words[start:end]).indices:
            if index in wanted:
                first.setdefault(index, None)
        start = end
    order = [*first, *sorted(wanted.difference(first))]  # a term split by a cut comes last
    order.sort(key=lambda index: -counts.get(index, 0.0))  # stable: first occurrence next
    kept = sorted(order[:MAX_QUERY_TERMS])
    return SparseVector(kept, [1.0] * len(kept))


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
    """query_keywords of the text; a long text off the event loop, and the choice of the
    terms kept (a few tokenizations of the text) too."""
    if _size(text) > INLINE_KEYWORD_BYTES:
        return await asyncio.to_thread(query_keywords, text)
    words = as_words(text)
    vector = _model.embed_query(words)
    if len(vector.indices) <= MAX_QUERY_TERMS:
        return SparseVector(vector.indices, vector.values)
    return await asyncio.to_thread(useful_terms, words, vector.indices)
