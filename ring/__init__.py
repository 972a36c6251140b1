"""Consistent-hash ring: builder (placement, rebalance), ring file format, lookups.

Public names: :class:`Ring` (lookups), :class:`RingBuilder` (placement),
:func:`write_ring`, :func:`read_ring`, :func:`save_builder`, :func:`load_builder`, and the errors
:class:`RingError`, :class:`RingBuilderError`, :class:`RingFileError`, :class:`RingValidationError`.

One ring per kind: ``account.ring``, ``container.ring``, ``object.ring`` and ``object-N.ring``
for storage policy N (see :func:`ring_name`).
"""

from ring.builder import RingBuilder
from ring.errors import RingBuilderError, RingError, RingFileError, RingValidationError
from ring.ring import Ring
from ring.ringfile import load_builder, read_ring, save_builder, write_ring


def ring_name(kind: str, policy_index: int = 0) -> str:
    """File name of a ring: ``account.ring``, ``object.ring``, ``object-1.ring``, ..."""
    if kind == "object" and policy_index:
        return f"object-{policy_index}.ring"
    return f"{kind}.ring"


__all__ = [
    "Ring",
    "RingBuilder",
    "RingBuilderError",
    "RingError",
    "RingFileError",
    "RingValidationError",
    "load_builder",
    "read_ring",
    "ring_name",
    "save_builder",
    "write_ring",
]
