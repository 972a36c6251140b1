"""Listings of containers and accounts: ``prefix``, ``delimiter``, ``marker``, ``end_marker``,
``limit``, ``reverse`` and (containers only) ``path``, with Swift's semantics, over any sorted
source of rows.

Public: :class:`ListingParams`, :class:`Subdir`, :func:`list_entries`, :func:`prefix_upper`,
:data:`Fetch`.

The algorithm is independent of SQLite: it asks a ``fetch`` function for rows in a name range,
in order, a page at a time, so the same code lists containers and accounts, and tests can check
it against a plain in-memory model. Semantics (Swift's ``list_objects_iter``):

- only names starting with ``prefix``; ``marker`` < name < ``end_marker`` (both exclusive);
  with ``reverse`` the order is descending and the roles swap: names < ``marker`` and
  > ``end_marker``, so that paging backwards works with the same markers;
- with ``delimiter``, a name with the delimiter after the prefix is folded into one
  ``subdir`` entry ``prefix + ... + delimiter``, listed once, at its sort position; a subdir equal
  to the lower paging bound (``marker``, or ``end_marker`` when reversed) is not repeated;
- at most ``limit`` entries (rows and subdirs together);
- ``path=p`` (Swift's pseudo-directory listing, containers only) overrides ``prefix`` and
  ``delimiter``: the prefix becomes ``p.rstrip('/') + '/'`` (``''`` for an empty ``p``) and only
  names directly "in" it are listed, as rows, never as subdirs: a name whose part after the
  prefix has no ``/`` except possibly as its last character (``p/dir/`` is a directory marker in
  ``p``; ``p/dir/x`` is not listed). The name equal to the prefix itself is not listed.
  Two deliberate differences from Swift's ``list_objects_iter``, both bugs there: Swift skips a
  name equal to ``p/dir0`` after a deeper name ``p/dir/x`` (its next-page marker is exclusive),
  and, reversed, it skips the marker ``p/dir/`` when that has children; here a listing and its
  reverse always hold the same names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from objectd.errors import PreconditionFailed
from objectd.limits import LISTING_LIMIT_MAX

Row = Sequence[Any]  # row[0] is the name
Fetch = Callable[[str | None, bool, str | None, bool, int], Iterable[Row]]
"""``fetch(lower, lower_inclusive, upper, descending, count)``: up to ``count`` rows with
``lower <(=) name < upper`` (None: unbounded), ascending or descending by name. It may be lazy
(an SQLite cursor): after a subdir the listing stops reading and fetches again past it, so a
delimiter listing reads one row per subdir, not a page."""

_DELIMITER_CODEPOINT_MAX = 254  # Swift's: the next code point must still be one character


@dataclasses.dataclass(frozen=True, slots=True)
class Subdir:
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class ListingParams:
    prefix: str = ""
    delimiter: str = ""
    marker: str = ""
    end_marker: str = ""
    limit: int = LISTING_LIMIT_MAX
    reverse: bool = False
    path: str | None = None  # None: not given; "" lists the top level (see the module docstring)

    @classmethod
    def from_query(cls, query: Mapping[str, str], *, allow_path: bool = False) -> ListingParams:
        """Parse and check listing parameters. Raises PreconditionFailed (412) as Swift does.

        ``allow_path``: honour ``path`` (Swift's container server does; its account server
        ignores it)."""
        limit_text = query.get("limit", "")
        limit = LISTING_LIMIT_MAX
        if limit_text:
            if not limit_text.lstrip("-").isdigit():
                raise PreconditionFailed(f"bad limit {limit_text!r}")
            limit = int(limit_text)
            if limit < 0 or limit > LISTING_LIMIT_MAX:
                raise PreconditionFailed(f"Maximum limit is {LISTING_LIMIT_MAX}")
        delimiter = query.get("delimiter", "")
        if delimiter and (len(delimiter) > 1 or ord(delimiter) > _DELIMITER_CODEPOINT_MAX):
            raise PreconditionFailed("Bad delimiter")
        reverse = query.get("reverse", "").lower() in ("1", "true", "yes", "on", "t", "y")
        return cls(
            prefix=query.get("prefix", ""),
            delimiter=delimiter,
            marker=query.get("marker", ""),
            end_marker=query.get("end_marker", ""),
            limit=limit,
            reverse=reverse,
            path=query.get("path") if allow_path else None,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """What a listing folds: the effective prefix and delimiter, and whether folded names are
    skipped (``path``) rather than listed as subdirs."""

    prefix: str
    delimiter: str
    path_mode: bool

    @classmethod
    def of(cls, params: ListingParams) -> _Plan:
        if params.path is None:
            return cls(params.prefix, params.delimiter, False)
        prefix = params.path.rstrip("/") + "/" if params.path else ""
        return cls(prefix, "/", True)

    def fold(self, name: str) -> str | None:
        """The subdir ``name`` belongs to (``prefix + ... + delimiter``), None if it is listed
        itself. With ``path``, a trailing ``/`` does not fold: ``p/dir/`` is listed in ``p``."""
        if not self.delimiter:
            return None
        end = name.find(self.delimiter, len(self.prefix))
        if end < 0 or (self.path_mode and end == len(name) - 1):
            return None
        return name[: end + 1]


def _successor(char: str) -> str:
    code = ord(char) + 1
    if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored; skip to the next real character
        code = 0xE000
    return chr(code)


def prefix_upper(prefix: str) -> str | None:
    """The least string greater than every string that starts with ``prefix`` (None: none)."""
    while prefix and ord(prefix[-1]) == 0x10FFFF:
        prefix = prefix[:-1]
    if not prefix:
        return None
    return prefix[:-1] + _successor(prefix[-1])


def _just_after(name: str) -> str:
    """The least string greater than ``name``: an exclusive upper bound that keeps ``name``
    itself but no longer name starting with it."""
    return name + "\x00"


def _min_upper(first: str | None, second: str | None) -> str | None:
    if first is None:
        return second
    if second is None:
        return first
    return min(first, second)


def list_entries(params: ListingParams, fetch: Fetch) -> list[Row | Subdir]:
    """The listing for ``params``; rows come from ``fetch``, in pages."""
    if params.limit == 0:
        return []
    if params.reverse:
        return _list_descending(params, fetch)
    return _list_ascending(params, fetch)


def _list_ascending(params: ListingParams, fetch: Fetch) -> list[Row | Subdir]:
    plan = _Plan.of(params)
    prefix = plan.prefix
    lower, inclusive = params.marker or None, False
    if prefix and (lower is None or prefix > lower):
        lower, inclusive = prefix, True
    upper = _min_upper(params.end_marker or None, prefix_upper(prefix) if prefix else None)
    results: list[Row | Subdir] = []
    while len(results) < params.limit:
        wanted = params.limit - len(results)
        rows = fetch(lower, inclusive, upper, False, wanted)
        seen = 0
        for seen, row in enumerate(rows, 1):  # noqa: B007 (seen is read after the loop)
            name = row[0]
            subdir = plan.fold(name)
            if subdir is not None:
                if subdir != params.marker and not plan.path_mode:
                    results.append(Subdir(subdir))
                lower, inclusive = prefix_upper(subdir), True
                break  # skip the rest of the subdir: fetch again past it
            if not (plan.path_mode and name == prefix):
                results.append(row)
            lower, inclusive = name, False
        else:
            if seen < wanted:
                break  # the source is exhausted
        _close(rows)
        if lower is None:
            break
    return results


def _list_descending(params: ListingParams, fetch: Fetch) -> list[Row | Subdir]:
    plan = _Plan.of(params)
    prefix = plan.prefix
    upper = _min_upper(params.marker or None, prefix_upper(prefix) if prefix else None)
    lower, inclusive = params.end_marker or None, False
    if prefix and (lower is None or prefix > lower):
        lower, inclusive = prefix, True
    results: list[Row | Subdir] = []
    while len(results) < params.limit:
        wanted = params.limit - len(results)
        rows = fetch(lower, inclusive, upper, True, wanted)
        seen = 0
        for seen, row in enumerate(rows, 1):  # noqa: B007 (seen is read after the loop)
            name = row[0]
            subdir = plan.fold(name)
            if subdir is not None:
                if plan.path_mode:  # skip the names under it, but the marker itself is listed
                    upper = _just_after(subdir)
                else:
                    if subdir != params.end_marker:
                        results.append(Subdir(subdir))
                    upper = subdir  # names under the subdir are all >= it
                break
            if not (plan.path_mode and name == prefix):
                results.append(row)
            upper = name
        else:
            if seen < wanted:
                break
        _close(rows)
    return results


def _close(rows: Iterable[Row]) -> None:
    close = getattr(rows, "close", None)
    if close is not None:
        close()
