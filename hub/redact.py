"""Camera credentials never leave the process: not in logs, the database, errors or API answers.

FFmpeg (and so PyAV) quotes the URL it was given in every error (`rtsp://admin:pw@host/…: Server
returned 401`), and the RTSP pull URL carries the camera's credentials (FFmpeg takes them only
there). Digest exchanges carry `response="…"`/`nonce="…"` and a Basic `Authorization:` header is the
password in base64. `redact()` removes all of these from any text; it is applied where the text is
made (source errors, motion and camera status) and, as a second line, by `RedactingFilter` on every
log record the daemon writes (hub/cli.py), so a library's own log line cannot leak them either.

`secrets` lets a caller also remove exact values (the configured password, which a URL may carry
percent-encoded or a library may echo alone).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import quote

# scheme://user[:password]@ — anything up to the first '@' before the host (RFC 3986 §3.2.1).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
# RFC 7616 §3.4 Digest fields and RFC 7617 Basic credentials as they appear in headers or logs.
_DIGEST = re.compile(r'(?i)\b(response|nonce|cnonce|username|opaque)\s*=\s*("[^"]*"|[^,\s]+)')
_AUTH_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization\s*:\s*(?:basic|digest|bearer)?\s*)[^\r\n]+")
_REDACTED = "***"
_secrets: set[str] = set()


def add_secrets(values: Iterable[str | None]) -> None:
    """Remember exact values to remove from every text `redact` sees (the cameras' passwords,
    also percent-encoded as they appear in a URL). Short values are ignored: a one-letter
    "password" would blank every such letter in every log line."""
    for value in values:
        if value and len(value) >= 4:
            _secrets.add(value)
            _secrets.add(quote(value, safe=""))


# `extra=PLAIN` on a log call: the message is made only of values the hub itself made (its URL, hub
# id, pairing code), never camera or network text, so the exact-secret scan is skipped for it. The
# scan would otherwise blank a contract line whenever a camera's password is a word in it: with the
# password "camhub" (the simulator's), `camhub ready url=` became `*** ready url=` and nothing
# waiting for it (tests, install.sh, an owner) saw the hub come up. Structural redaction still runs.
PLAIN = {"camhub_plain": True}


def redact(text: str, *, secrets: bool = True) -> str:
    """`text` without URL userinfo, Digest/Basic material or any remembered secret."""
    if not text:
        return text
    out = _USERINFO.sub(r"\1", text)
    out = _DIGEST.sub(lambda m: f'{m.group(1)}="{_REDACTED}"', out)
    out = _AUTH_HEADER.sub(lambda m: m.group(1) + _REDACTED, out)
    for secret in _secrets if secrets else ():
        if secret in out:
            out = out.replace(secret, _REDACTED)
    return out


class RedactingFilter(logging.Filter):
    """Redacts every record's final message (arguments included) before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to logging's own error report
            return True
        cleaned = redact(message, secrets=not getattr(record, "camhub_plain", False))
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks quote the exception text: format it now, redacted, and drop the original.
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def install_log_filter() -> None:
    """Put `RedactingFilter` on every handler of the root logger (call after logging is set up)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
