"""The camhub wire formats (docs/PROTOCOL.md), in a package of their own.

Everything a client, a verifier or the relay needs to speak camhub lives here, and nothing here
imports the hub: RFC 8941 structured fields (`structured_fields`), RFC 9421 message signatures
(`httpsig`), JWS (`jws`), keys and thumbprints (`keys`), RFC 3339 times (`rfc3339`), the RFC 9162
Merkle tree and C2SP checkpoints (`merkle`, `checkpoint`), the delivery container (`delivery`), the
stand-alone audit verifier (`audit_verify`), and the relay's envelope and subjects (`relay_wire`,
PROTOCOL §7). `hub/`, `relay/`, `camhub-agency` and third-party clients import it.
"""
