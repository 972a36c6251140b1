"""The one place where exceptions become Swift responses.

Public: :class:`SwiftError` (raise it anywhere with the status Swift would answer),
:func:`error_response`, :func:`unexpected_response`, :data:`STATUS_BODIES`.

Operating errors from the backend (:class:`objectd.client.BackendError`) that reach this module
mean that not enough nodes answered: 503, logged with the transaction id. Anything else is a bug:
500 with a bare body, logged once with the traceback and the ``X-Trans-Id`` the client received.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

from objectd.client import BackendError

log = logging.getLogger("proxy")

# Swift's swob default bodies (status -> (title, explanation)), which clients show to users.
STATUS_BODIES: dict[int, tuple[str, str]] = {
    400: ("Bad Request", "The server could not comply with the request since it is either "
          "malformed or otherwise incorrect."),
    401: ("Unauthorized", "This server could not verify that you are authorized to access the "
          "document you requested."),
    403: ("Forbidden", "Access was denied to this resource."),
    404: ("Not Found", "The resource could not be found."),
    405: ("Method Not Allowed", "The method is not allowed for this resource."),
    409: ("Conflict", "There was a conflict when trying to complete your request."),
    411: ("Length Required", "Length Required"),
    412: ("Precondition Failed", "A precondition for this request was not met."),
    413: ("Request Entity Too Large", "The body of your request was too large for this server."),
    416: ("Requested Range Not Satisfiable", "The Range requested is not available."),
    422: ("Unprocessable Entity", "Unable to process the contained instructions"),
    499: ("Client Disconnect", "The client was disconnected during request."),
    500: ("Internal Error", "The server has either erred or is incapable of performing the "
          "requested operation."),
    501: ("Not Implemented", "The server does not implement the requested method."),
    503: ("Service Unavailable", "The server is currently unavailable. Please try again at a "
          "later time."),
    507: ("Insufficient Storage", "There was not enough space to save the resource."),
}  # fmt: skip

REASONS = {499: "Client Disconnect"}


class SwiftError(Exception):
    """An answer other than success, exactly as Swift gives it.

    Args:
        status: the HTTP status.
        body: a plain-text body; None gives Swift's default HTML body for the status.
        headers: extra response headers (``WWW-Authenticate``, ``Content-Range``, ...).
    """

    def __init__(
        self, status: int, body: str | None = None, headers: Mapping[str, str] | None = None
    ):
        super().__init__(f"{status} {body or ''}".strip())
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def _default_body(status: int) -> str:
    title, explanation = STATUS_BODIES.get(status, ("Error", ""))
    return f"<html><h1>{title}</h1><p>{explanation}</p></html>"


def error_response(error: SwiftError, *, head: bool = False) -> web.Response:
    """The response for ``error`` (no body for HEAD, as Swift)."""
    if error.body is None:
        text, content_type = _default_body(error.status), "text/html"
    else:
        text, content_type = error.body, "text/plain"
    body = b"" if head else text.encode()
    headers = {"Content-Type": f"{content_type}; charset=UTF-8", **error.headers}
    response = web.Response(
        status=error.status, body=body, headers=headers, reason=REASONS.get(error.status)
    )
    if head:
        response.headers["Content-Length"] = str(len(text.encode()))
    return response


def unexpected_response(exc: BaseException, request: web.Request) -> web.Response:
    """503 for a backend failure that left no usable answer, 500 for anything else (a bug)."""
    head = request.method == "HEAD"
    if isinstance(exc, BackendError):
        log.error("%s %s: no usable backend answer: %s", request.method, request.path, exc)
        return error_response(SwiftError(503), head=head)
    log.error("%s %s: unexpected error", request.method, request.path, exc_info=exc)
    return error_response(SwiftError(500), head=head)
