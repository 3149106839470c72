"""The moves of points between a collection's shards, which reads must see once."""

from __future__ import annotations

import time

# How long a read waits for a move under way (one engine write: short).
MOVE_WAIT_SECONDS = 1.0


class Moves:
    """A seqlock over the upserts that move points between a collection's shards.

    An upsert of an id an older shard holds writes the point to the fresh shard, then
    deletes it from the older one: two engine calls. A read that sums the shards one by
    one may count the point in both, and one that searches them side by side may search
    the fresh shard before the write and the older one after the delete, finding it in
    neither. The number is odd while such a move runs (writes are serialised: one writer
    at a time); a read that overlapped a move is done again (count) or searches the
    fresh shard again (search_fresh_again). Shared by all of a collection's views: a read
    on a view just retired still meets the moves of writes on the new one."""

    __slots__ = ("number",)

    def __init__(self) -> None:
        self.number = 0

    def begin(self) -> None:
        self.number += 1

    def end(self) -> None:
        self.number += 1

    def settled(self) -> int:
        """The number once no move runs (at most MOVE_WAIT_SECONDS later)."""
        deadline = time.monotonic() + MOVE_WAIT_SECONDS
        while self.number % 2 and time.monotonic() < deadline:
            time.sleep(0.0005)
        return self.number
