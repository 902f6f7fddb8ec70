"""Typed errors of the consent layer.

Every rejection is a `ConsentError` carrying a stable `code` (the JSON `error` of PROTOCOL.md), the
HTTP `status` the API answers with, and a human `detail`. They are raised where detected and turned
into responses in one place (the API middleware), so a code never changes meaning between modules.

    ConsentError
    ├── JWSError           400/403  owner decisions and manifests (RFC 7515 / RFC 8037)
    ├── SignatureError     401/413  signed agency requests (RFC 9421, RFC 9530), PROTOCOL §2
    ├── AuditError         500/400  the audit log and its proofs (RFC 9162, C2SP), PROTOCOL §5
    └── DeliveryError      500/400  the delivery container (age + tar), PROTOCOL §2.3
"""

from __future__ import annotations


class ConsentError(Exception):
    """A consent-layer rejection with a stable machine-readable `code`."""

    status: int = 400
    # Seconds a refused client should wait (429 and 503): sent as `Retry-After` (RFC 9110 §10.2.3).
    retry_after: float | None = None

    def __init__(
        self, code: str, detail: str = "", status: int | None = None, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        if status is not None:
            self.status = status
        if retry_after is not None:
            self.retry_after = retry_after

    def to_json(self) -> dict[str, str]:
        """The response body PROTOCOL.md prescribes: `{"error": code, "detail": ...}`."""
        return {"error": self.code, "detail": self.detail}


class JWSError(ConsentError):
    """A JWS was malformed (400) or did not verify (403)."""

    status = 400


class SignatureError(ConsentError):
    """An RFC 9421 signed request was refused; PROTOCOL §2 answers 401 for every rule."""

    status = 401


class AuditError(ConsentError):
    """The audit log, a proof or a checkpoint is inconsistent or was asked for out of range."""

    status = 400


class DeliveryError(ConsentError):
    """A delivery container could not be built, decrypted or verified."""

    status = 400
