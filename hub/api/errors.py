"""The one place typed errors become HTTP responses, so every error body has the same shape."""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Awaitable, Callable

from aiohttp import web

from camhub_protocol.errors import ConsentError
from camhub_protocol.limits import retry_after_header
from hub.errors import HubError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, detail: str = "") -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (HubError, ConsentError) as exc:
        response = error_response(exc.status, exc.code, exc.detail)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = retry_after_header(exc.retry_after)
        return response
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "body_too_large", "request body exceeds the limit")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or "")
        raise
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            # Another process held the database's write lock past busy_timeout (a backup, a sqlite3
            # shell): the statement was not applied and the client may simply try again.
            log.warning("database busy in %s %s: %s", request.method, request.path[:200], exc)
            response = error_response(503, "busy", "the hub's database is busy; try again")
            response.headers["Retry-After"] = "5"
            return response
        log.exception("unhandled error in %s %s", request.method, request.path[:200])
        return error_response(500, "internal_error", "")
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            # A path segment over NAME_MAX from the URL: aiohttp's static handler (/ui/) stats it
            # unchecked. No such file can exist, so it is a plain 404, not a server error.
            return error_response(404, "not_found", "")
        log.exception("unhandled error in %s %s", request.method, request.path[:200])
        return error_response(500, "internal_error", "")
    except Exception:
        # Input from the network must never take the daemon down; log with the traceback, answer 500.
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "")
