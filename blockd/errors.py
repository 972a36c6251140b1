"""blockd's typed errors, named by who is at fault.

Public: :class:`BlockdError` and its subclasses. Backends, targets and the service raise these;
only :mod:`blockd.api.errors` turns them into HTTP responses (the ``status`` attribute is the
status code it uses). Anything else that escapes is a bug and becomes a bare 500.
"""

from __future__ import annotations


class BlockdError(Exception):
    """Base class; ``status`` is the HTTP status the API answers with."""

    status = 500


class InvalidRequest(BlockdError):
    """The caller sent something malformed or impossible (bad size, bad IQN, unknown field)."""

    status = 400


class Unauthorized(BlockdError):
    """No token, or a token that is not valid."""

    status = 401


class Forbidden(BlockdError):
    """A valid token without any of the roles blockd accepts."""

    status = 403


class NotFound(BlockdError):
    """The volume, snapshot or task does not exist on this node."""

    status = 404


class Conflict(BlockdError):
    """The request clashes with the current state (exists, busy, exported, has snapshots)."""

    status = 409


class InsufficientCapacity(BlockdError):
    """The pool or file system cannot take the request (over-subscription limit or out of space)."""

    status = 507


class BackendFailure(BlockdError):
    """The storage or target layer failed (a command exited non-zero). Outside world; logged."""

    status = 500


class ConfigurationError(BlockdError):
    """The node cannot serve with this configuration (e.g. no reflink on the file system)."""

    status = 500


class AuthUnavailable(BlockdError):
    """Keystone cannot answer now; the caller may retry (never blamed on the token)."""

    status = 503
