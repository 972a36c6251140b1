"""objectd's typed errors and the one place where they become HTTP responses.

Public: :class:`ObjectdError` and its subclasses, :func:`error_response`.

Errors are named by who is at fault, as in the rest of Shoal:

- the request (``BadRequest`` 400, ``PreconditionFailed`` 412, ``EtagMismatch`` 422,
  ``LengthRequired`` 411, ``ClientDisconnect`` 499, ``RequestTimeout`` 408),
- the state it met (``NotFound`` 404, ``Conflict`` 409 with the newer timestamp),
- the device (``DeviceUnavailable`` and ``DiskFull``, both 507 so the proxy tries a handoff),
- our own code (``InvariantViolation``: a bug; it is logged and answered 500).

A handler raises; :func:`error_response` turns the error into a short text response with the
Swift status and, where Swift sends one, ``X-Backend-Timestamp``.
"""

from __future__ import annotations

from aiohttp import web

from shoal.timestamp import Timestamp


class ObjectdError(Exception):
    """Base of the errors a request can end with; ``status`` is the HTTP status."""

    status = 500

    def __init__(self, message: str = "", *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ObjectdError):
    status = 400


class NotFound(ObjectdError):
    status = 404

    def __init__(self, message: str = "", *, timestamp: Timestamp | None = None):
        headers = {"X-Backend-Timestamp": timestamp.internal} if timestamp else {}
        super().__init__(message, headers=headers)


class RequestTimeout(ObjectdError):
    status = 408


class Conflict(ObjectdError):
    """The stored state is as new as or newer than the request: the newest timestamp wins."""

    status = 409

    def __init__(self, message: str = "", *, timestamp: Timestamp | None = None):
        headers = {"X-Backend-Timestamp": timestamp.internal} if timestamp else {}
        super().__init__(message, headers=headers)
        self.timestamp = timestamp


class LengthRequired(ObjectdError):
    status = 411


class PreconditionFailed(ObjectdError):
    status = 412


class EtagMismatch(ObjectdError):
    """The body's MD5 is not the ETag the client promised; nothing was stored."""

    status = 422


class ClientDisconnect(ObjectdError):
    """The client sent fewer bytes than it announced; nothing was stored."""

    status = 499


class DeviceUnavailable(ObjectdError):
    """The device is missing, or not a mount point while mount_check is on."""

    status = 507


class DiskFull(ObjectdError):
    """The write would leave less than ``fallocate_reserve`` free, or the disk said ENOSPC."""

    status = 507


class InvariantViolation(ObjectdError):
    """A bug in objectd: an assertion about our own data did not hold."""

    status = 500


_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    412: "Precondition Failed",
    422: "Unprocessable Entity",
    499: "Client Disconnect",
    500: "Internal Server Error",
    507: "Insufficient Storage",
}


def error_response(error: ObjectdError) -> web.Response:
    """The response for ``error``: its status, its headers, a one-line text body."""
    reason = _REASONS.get(error.status, "Error")
    body = f"{reason}: {error.message}" if error.message else reason
    response = web.Response(status=error.status, text=body, headers=error.headers)
    return response
