"""How many bytes of PUT bodies one proxy worker holds whole at once.

Public: :class:`ByteBudget`.

A PUT body up to ``WHOLE_PUT_BYTES_MAX`` (2 MiB) is read whole before the nodes are asked
(:mod:`proxy.object_put`): fewer round trips and less CPU than streaming it. Streaming holds at
most ``replicas x PUTTER_QUEUE_CHUNKS_MAX x CHUNK_BYTES`` (768 KiB) per PUT, so without a bound
many slow clients uploading such bodies at once would make a worker hold up to 2 MiB each.
Each whole body therefore takes its size from the worker's budget (``whole_put_buffer_bytes_max``)
for as long as the PUT lasts; when the budget is spent, a body streams instead, which costs CPU
but never memory beyond the streaming bound. One event loop per worker: no lock needed.
"""

from __future__ import annotations


class ByteBudget:
    """A count of bytes in use, never above ``bytes_max``."""

    def __init__(self, bytes_max: int):
        if bytes_max < 0:
            raise ValueError(f"bytes_max must be >= 0, got {bytes_max}")
        self.bytes_max = bytes_max
        self.bytes_used = 0

    def take(self, count: int) -> bool:
        """Reserve ``count`` bytes if they fit; whether they did."""
        if self.bytes_used + count > self.bytes_max:
            return False
        self.bytes_used += count
        return True

    def give_back(self, count: int) -> None:
        """Return bytes reserved by a successful :meth:`take`."""
        if count > self.bytes_used:
            raise ValueError(f"giving back {count} bytes, only {self.bytes_used} in use")
        self.bytes_used -= count
