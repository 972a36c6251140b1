"""Swift-compatible timestamps: the newest ``X-Timestamp`` wins everywhere.

Public: :class:`Timestamp`, :func:`now`.

The normal form is Swift's ``"%016.05f"`` (``0001700000000.12345`` is not it: ten digits of
seconds, a dot, five digits: ``1700000000.12345``). An *offset* orders two writes that carry the
same client-visible time (a POST right after a PUT in the same 10 µs); the internal form appends it
as ``_%016x``, exactly as Swift does, so file names sort in time order as plain strings.
"""

from __future__ import annotations

import functools
import time

_PRECISION = 100_000  # ticks per second: five decimal places
_MAX_SECONDS = 9_999_999_999


class TimestampError(ValueError):
    """A string is not a valid timestamp."""


@functools.total_ordering
class Timestamp:
    """An instant with 10 µs resolution plus an offset; immutable and hashable."""

    __slots__ = ("offset", "ticks")

    def __init__(self, seconds: float | int = 0, offset: int = 0, *, ticks: int | None = None):
        self.ticks = ticks if ticks is not None else round(seconds * _PRECISION)
        self.offset = offset
        if not 0 <= self.ticks <= _MAX_SECONDS * _PRECISION:
            raise TimestampError(f"timestamp out of range: {seconds!r}")
        if offset < 0:
            raise TimestampError(f"negative timestamp offset: {offset!r}")

    @classmethod
    def parse(cls, text: str | bytes | float | int | Timestamp) -> Timestamp:
        """Parse the normal or internal form (or a number); raise :class:`TimestampError`."""
        if isinstance(text, Timestamp):
            return text
        if isinstance(text, int | float):
            return cls(text)
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        offset = 0
        body = text.strip()
        if "_" in body:
            body, _, offset_hex = body.partition("_")
            try:
                offset = int(offset_hex, 16)
            except ValueError:
                raise TimestampError(f"bad timestamp offset: {text!r}") from None
        try:
            whole, _, frac = body.partition(".")
            if not whole.isdigit() or (frac and not frac.isdigit()):
                raise ValueError
            frac = (frac + "00000")[:5] if len(frac) <= 5 else frac
            ticks = int(whole) * _PRECISION + round(int(frac) / 10 ** (len(frac) - 5))
        except ValueError:
            raise TimestampError(f"bad timestamp: {text!r}") from None
        return cls(ticks=ticks, offset=offset)

    @property
    def seconds(self) -> float:
        return self.ticks / _PRECISION

    @property
    def normal(self) -> str:
        """``1700000000.12345``: what clients see in ``X-Timestamp``."""
        whole, frac = divmod(self.ticks, _PRECISION)
        return f"{whole:010d}.{frac:05d}"

    @property
    def internal(self) -> str:
        """The normal form, plus ``_<offset>`` when there is one: used in file names."""
        if self.offset:
            return f"{self.normal}_{self.offset:016x}"
        return self.normal

    def bump(self, delta: int = 1) -> Timestamp:
        """The same instant with a larger offset: orders an internal write after this one."""
        return Timestamp(ticks=self.ticks, offset=self.offset + delta)

    def __str__(self) -> str:
        return self.internal

    def __repr__(self) -> str:
        return f"Timestamp({self.internal!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timestamp):
            return NotImplemented
        return (self.ticks, self.offset) == (other.ticks, other.offset)

    def __lt__(self, other: Timestamp) -> bool:
        return (self.ticks, self.offset) < (other.ticks, other.offset)

    def __hash__(self) -> int:
        return hash((self.ticks, self.offset))

    def http_date(self) -> str:
        """RFC 7231 date (``Last-Modified``), rounded up to the next second as Swift does."""
        seconds = -(-self.ticks // _PRECISION)
        return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(seconds))

    def iso(self) -> str:
        """``2023-11-14T22:13:20.123450``: the form of ``last_modified`` in listings."""
        whole, frac = divmod(self.ticks, _PRECISION)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{frac * 10:06d}"


def now() -> Timestamp:
    """The current wall-clock time as a :class:`Timestamp`."""
    return Timestamp(time.time())
