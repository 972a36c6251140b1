"""HTTP byte ranges (RFC 7233) with Swift's rules: parsing, resolving, multipart framing.

Public: :func:`parse_range`, :func:`resolve_ranges`, :class:`MultipartPlan`,
:func:`content_range`.

Swift's behaviour, kept on purpose so clients see no difference:

- a syntactically invalid ``Range`` header is ignored (the whole object, 200);
- ``bytes=-N`` larger than the object means the whole object; ranges starting past the end are
  dropped; if none is left the answer is 416 with ``Content-Range: bytes */<size>``;
- more than 50 ranges, more than 2 overlapping pairs, or 8+ ranges out of order are refused with
  416 (RFC 7233 section 6.1: cheap requests must not cost many parts);
- on an empty object any range yields the (empty) whole object with 200.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets

from objectd.limits import NONASCENDING_RANGES_MAX, RANGE_OVERLAPS_MAX, RANGES_MAX

RangeSpec = tuple[int | None, int | None]  # (first, last) inclusive, as written in the header


def parse_range(header: str | None) -> list[RangeSpec] | None:
    """The specs of a ``Range`` header, or None if absent or syntactically invalid."""
    if not header:
        return None
    value = header.replace(" ", "")
    if not value.lower().startswith("bytes="):
        return None
    specs: list[RangeSpec] = []
    for item in value[6:].split(","):
        first_text, dash, last_text = item.partition("-")
        if not dash or (first_text and not first_text.isdigit()):
            return None
        if last_text and not last_text.isdigit():
            return None
        first = int(first_text) if first_text else None
        last = int(last_text) if last_text else None
        if first is None and last is None:
            return None
        if first is not None and last is not None and last < first:
            return None
        specs.append((first, last))
    return specs or None


def resolve_ranges(specs: list[RangeSpec], size: int) -> list[tuple[int, int]] | None:
    """Half-open ``(start, stop)`` ranges for an object of ``size`` bytes.

    Returns None to serve the whole object (200), ``[]`` for 416, else the ranges (206).
    """
    if size == 0:
        return None
    ranges: list[tuple[int, int]] = []
    for first, last in specs:
        if first is None:
            assert last is not None
            if last == 0:
                continue
            ranges.append((max(0, size - last), size))
        elif first < size:
            ranges.append((first, size if last is None else min(last + 1, size)))
    if len(ranges) > RANGES_MAX:
        return []
    overlaps = sum(
        1
        for (start1, stop1), (start2, stop2) in itertools.combinations(ranges, 2)
        if start1 < stop2 and start2 < stop1
    )
    if overlaps > RANGE_OVERLAPS_MAX:
        return []
    ascending = all(a[0] <= b[0] for a, b in itertools.pairwise(ranges))
    if not ascending and len(ranges) >= NONASCENDING_RANGES_MAX:
        return []
    return ranges


def content_range(start: int, stop: int, size: int) -> str:
    return f"bytes {start}-{stop - 1}/{size}"


@dataclasses.dataclass(slots=True)
class MultipartPlan:
    """The ``multipart/byteranges`` body of several ranges: part headers and data ranges in
    order, and the exact total length (the response has a Content-Length, as Swift's does)."""

    content_type: str  # of the response
    pieces: list[bytes | tuple[int, int]]  # framing bytes, or a (start, stop) range of the body
    length: int

    @classmethod
    def build(cls, ranges: list[tuple[int, int]], size: int, object_type: str) -> MultipartPlan:
        boundary = secrets.token_hex(16)
        pieces: list[bytes | tuple[int, int]] = []
        length = 0
        for index, (start, stop) in enumerate(ranges):
            head = (
                ("\r\n" if index else "")
                + f"--{boundary}\r\nContent-Type: {object_type}\r\n"
                + f"Content-Range: {content_range(start, stop, size)}\r\n\r\n"
            ).encode("utf-8", "surrogateescape")
            pieces += [head, (start, stop)]
            length += len(head) + stop - start
        tail = f"\r\n--{boundary}--".encode()
        pieces.append(tail)
        length += len(tail)
        return cls(f"multipart/byteranges;boundary={boundary}", pieces, length)

    def render(self, body: bytes) -> bytes:
        """The whole multipart body, for an object already in memory."""
        return b"".join(p if isinstance(p, bytes) else body[p[0] : p[1]] for p in self.pieces)
