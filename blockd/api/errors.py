"""The one place where errors become HTTP responses.

Public: :func:`error_middleware`, :func:`error_body`.

A :class:`~blockd.errors.BlockdError` becomes its status with ``{"error": {"code", "message"}}``;
aiohttp's own HTTP errors (404 for an unknown path, 405) get the same JSON shape; anything else
is a bug or an outside failure nobody typed: it is logged once with the transaction id and
answered with a bare 500, never a stack trace. Every response carries ``X-Trans-Id``.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from blockd.errors import BlockdError
from shoal import log as shoal_log

log = logging.getLogger("blockd.api")

TRANS_ID_HEADER = "X-Trans-Id"


def error_body(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message}}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    trans_id = shoal_log.new_trans_id()
    shoal_log.trans_id.set(trans_id)
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        raise
    except BlockdError as exc:
        if exc.status >= 500:
            log.error("%s %s -> %d: %s", request.method, request.path, exc.status, exc)
        response = error_body(exc.status, str(exc))
    except web.HTTPException as exc:
        response = error_body(exc.status, exc.reason)
    except Exception:
        log.exception("%s %s -> 500 (unexpected)", request.method, request.path)
        response = error_body(500, "internal error; see the log for " + trans_id)
    response.headers[TRANS_ID_HEADER] = trans_id
    return response
