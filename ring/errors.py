"""Errors of the ring, named by who is at fault."""


class RingError(Exception):
    """Base class of ring errors."""


class RingBuilderError(RingError):
    """The operator asked for something the builder cannot do (bad device, bad value)."""


class RingFileError(RingError):
    """A ring or builder file is missing, corrupt, truncated or of an unknown format."""


class RingValidationError(RingError):
    """A builder's invariants do not hold: a bug, never an operator error."""
