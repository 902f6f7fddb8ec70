"""Typed errors that reach HTTP clients. Each has a stable `code` (the JSON `error`) and a status.

Raised where the problem is detected; turned into a response in one place (`hub.api.errors`).
"""

from __future__ import annotations


class HubError(Exception):
    """An error a client may see: `{"error": code, "detail": detail}` with HTTP `status`."""

    code = "error"
    status = 400
    # Seconds a refused client should wait (429 and 503): sent as `Retry-After` (RFC 9110 §10.2.3).
    retry_after: float | None = None

    def __init__(self, detail: str = "", *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(detail or self.code)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class NotFound(HubError):
    code = "not_found"
    status = 404


class BadRequest(HubError):
    code = "bad_request"
    status = 400


class RateLimited(HubError):
    """Too many calls or failed tries from one client (issue 12): wait `retry_after` seconds."""

    code = "rate_limited"
    status = 429

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
