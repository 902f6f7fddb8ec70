"""`camhub-agency`: the reference agency client (PROTOCOL.md §2), using only the public protocol.

    camhub-agency keygen DIR                                   signing key + age identity into DIR
    camhub-agency request --url U --key DIR --camera C --start T --end T --reason R ...   (§2.1)
    camhub-agency status --url U --key DIR REQUEST_ID                                   (§2.2)
    camhub-agency fetch --url U --key DIR REQUEST_ID --out OUT [--hub-id ID]            (§2.3)
    camhub-agency live --url U --key DIR REQUEST_ID --seconds N --out FILE.mp4          (§2.4)

Everything goes over HTTP(S): every call is RFC 9421 signed (`httpsig.sign_request`: `sig1`,
ed25519, tag `camhub-agency-v1`, fresh nonce, 300 s validity, covering @method, @authority, @path,
@query when there is one, and content-digest + content-type with a body). `fetch` downloads each
delivery to `OUT/<delivery id>.age` (checking the bytes and SHA-256 the poll announced), decrypts it
with the agency's age identity, and verifies `manifest.jws` against the hub key from
`GET /api/v1/hub` (pinned with `--hub-id` when given: the key's thumbprint must equal it), every file's
hash and the audit inclusion proof (`delivery.open_delivery`); the files land in `OUT/<delivery id>/`.

It imports only stand-alone client helpers (httpsig, jws, keys, the delivery reader, and for `live`
the WHEP viewer `hub.egress.whep_client`, which receives without decoding and stream-copies to MP4),
never the hub's store, daemon or services.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyrage import x25519

from camhub_protocol import httpsig, sealed_bodies
from camhub_protocol.keys import jwk_thumbprint, okp_public_jwk, write_secret

SIGNING_KEY = "agency.key"
PUBLIC_JWK = "agency.jwk"
AGE_IDENTITY = "age.key"
AGE_RECIPIENT = "age.pub"
CHUNK = 1024 * 1024


class AgencyError(Exception):
    """The hub refused or the delivery did not verify; `body` holds the hub's JSON error if any."""

    def __init__(self, message: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _http_error(exc: urllib.error.HTTPError) -> AgencyError:
    """The server's answer as an AgencyError: status, and the JSON error body when there is one."""
    raw = exc.read()
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw.decode("utf-8", "replace")
    return AgencyError(f"HTTP {exc.code}: {parsed}", exc.code, parsed)


class Agency:
    """An agency identity (signing key + age identity) talking to one hub."""

    def __init__(self, key_dir: Path, url: str, cafile: str | None = None) -> None:
        key = serialization.load_pem_private_key((key_dir / SIGNING_KEY).read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise AgencyError(f"{key_dir / SIGNING_KEY} is not an Ed25519 key")
        self.key = key
        self.keyid = jwk_thumbprint(okp_public_jwk(key.public_key()))
        # age-keygen layout: comment lines, then the AGE-SECRET-KEY-1... line.
        lines = (key_dir / AGE_IDENTITY).read_text().splitlines()
        self.identity = next((ln.strip() for ln in lines if ln.startswith("AGE-SECRET-KEY-")), "")
        # The hub's base URL: the hub itself, `{relay}/hubs/{hub_id}` or `{relay}/areas/{cell}` (§7).
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self.scheme = parts.scheme
        self.authority = parts.netloc
        self.base_path = parts.path.rstrip("/")
        area = re.fullmatch(r".*/areas/([0-9b-hjkmnp-z]{5})", self.base_path)
        self.area = area.group(1) if area else None
        self._ssl = ssl.create_default_context(cafile=cafile) if cafile else None

    def _path(self, target: str) -> tuple[str, str | None]:
        """The path (base path included) and query of `target`: a path under this hub, or an absolute
        URL on the same host (a delivery or live URL a poll answered)."""
        parts = urlsplit(target)
        if parts.scheme:
            if (parts.scheme, parts.netloc) != (self.scheme, self.authority):
                raise AgencyError(f"{target} is not on {self.url}")
            return parts.path, parts.query or None
        return self.base_path + parts.path, parts.query or None

    def sign_headers(self, method: str, target: str, body: bytes, content_type: str | None) -> dict[str, str]:
        """The headers that sign one request for `target` (RFC 9421, PROTOCOL §2), Content-Type included.
        Through a relay the signed `@authority` is the relay's and `@path` carries the `/hubs/{hub_id}`
        (or `/areas/{cell}`) prefix: exactly what is sent (§7.1)."""
        path, query = self._path(target)
        headers: list[tuple[str, str]] = [("Content-Type", content_type)] if content_type else []
        headers += httpsig.sign_request(
            method=method,
            authority=self.authority,
            path=path,
            query=query,
            headers=headers,
            body=body,
            private_key=self.key,
            keyid=self.keyid,
            created=int(time.time()),
            scheme=self.scheme,
        )
        return dict(headers)

    def _open(self, method: str, target: str, body: bytes = b"", content_type: str | None = None) -> Any:
        """Send one signed request for `target` (a path or an absolute URL of this hub)."""
        headers = self.sign_headers(method, target, body, content_type)
        path, query = self._path(target)
        url = f"{self.scheme}://{self.authority}{path}" + (f"?{query}" if query else "")
        req = urllib.request.Request(url, data=body or None, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=60, context=self._ssl)
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None

    def _json(self, method: str, target: str, body: bytes = b"", content_type: str | None = None) -> Any:
        with self._open(method, target, body, content_type) as resp:
            return json.loads(resp.read())

    def hub(self, base: str | None = None) -> dict[str, Any]:
        """`GET /api/v1/hub` (unsigned, §1) of this hub, or of the hub at `base`."""
        # An error is an AgencyError like any other call's: a relay mid-election answers this 503
        # (§7.2) and callers retry on the status, not on urllib's exception type.
        try:
            with urllib.request.urlopen(
                f"{base or self.url}/api/v1/hub", timeout=30, context=self._ssl
            ) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None

    def request(self, fields: dict[str, Any], hub_id: str | None = None) -> dict[str, Any]:
        """§2.1 (an area request, §7.4, when the URL is `{relay}/areas/{cell}`); returns the answer plus
        `request_sha256` (what the owner signs over)."""
        if self.area is not None:
            doc = {
                "area": self.area,
                **{k: v for k, v in fields.items() if k not in ("cameras", "live_max_seconds")},
            }
            body = json.dumps(doc).encode("utf-8")
            answer = self._json("POST", "/requests", body, "application/json")
        elif self.pinned_hub is not None:
            # Through a relay (§7.6): sealed to the hub's recipient, which its pinned key vouches for.
            recipient = sealed_bodies.verified_recipient(self.pinned_hub_document())
            body = json.dumps({"hub": self.pinned_hub, **fields}).encode("utf-8")
            sealed = sealed_bodies.seal(body, recipient)
            answer = self._json("POST", "/api/agency/v1/requests", sealed, sealed_bodies.CONTENT_TYPE)
        else:
            body = json.dumps({"hub": hub_id or self.hub()["hub_id"], **fields}).encode("utf-8")
            answer = self._json("POST", "/api/agency/v1/requests", body, "application/json")
        return {**answer, "request_sha256": hashlib.sha256(body).hexdigest()}

    @property
    def pinned_hub(self) -> str | None:
        """The hub id in a relay URL (`{relay}/hubs/{hub_id}`), which pins the hub's key (§7.1)."""
        pinned = re.search(r"/hubs/([A-Za-z0-9_-]{43})$", self.base_path)
        return pinned.group(1) if pinned else None

    def pinned_hub_document(self) -> dict[str, Any]:
        """`GET …/api/v1/hub` through the relay, refused unless its key hashes to the pinned hub id."""
        hub = self.hub()
        if (
            jwk_thumbprint(hub.get("public_jwk", {})) != self.pinned_hub
            or hub.get("hub_id") != self.pinned_hub
        ):
            raise AgencyError("the relay answered with another hub's key")
        return hub

    def status(self, request_id: str) -> dict[str, Any]:
        """§2.2 (§7.4 for an area request)."""
        if self.area is not None:
            return self._json("GET", f"/requests/{request_id}")
        return self._json("GET", f"/api/agency/v1/requests/{request_id}")

    def fetch(self, request_id: str, out: Path, hub_id: str | None = None) -> list[dict[str, Any]]:
        """§2.3: download, check, decrypt and verify every delivery of a fulfilled request."""
        from camhub_protocol import delivery as delivery_reader

        state = self.status(request_id)
        if state.get("status") != "fulfilled":
            raise AgencyError(f"request {request_id} is {state.get('status')}, not fulfilled")
        out.mkdir(parents=True, exist_ok=True)
        results = []
        keys: dict[str, dict[str, Any]] = {}
        for item in state["deliveries"]:
            url_path = urlsplit(item["url"]).path
            delivery_id = url_path.rsplit("/", 1)[-1]
            # The hub that made it: through a relay its id is in the URL (§7.1), which pins its key;
            # an area request's deliveries each name their own hub (§7.4).
            base = item["url"][: item["url"].index("/api/agency/v1/deliveries/")]
            in_url = re.search(r"/hubs/([A-Za-z0-9_-]{43})/api/agency/v1/deliveries/", url_path)
            expected = in_url.group(1) if in_url else hub_id
            if base not in keys:
                hub = self.hub(base)
                if jwk_thumbprint(hub["public_jwk"]) != hub["hub_id"] or (
                    expected is not None and hub["hub_id"] != expected
                ):
                    raise AgencyError("the hub's key does not match the expected hub_id")
                keys[base] = hub
            hub_jwk = keys[base]["public_jwk"]
            encrypted = out / f"{delivery_id}.age"
            digest, size = hashlib.sha256(), 0
            with self._open("GET", item["url"]) as resp, encrypted.open("wb") as f:
                ctype = resp.headers.get("Content-Type", "")
                if ctype != delivery_reader.CONTENT_TYPE:
                    raise AgencyError(f"unexpected Content-Type {ctype!r}")
                while chunk := resp.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
            if (digest.hexdigest(), size) != (item["sha256"], item["bytes"]):
                raise AgencyError(f"delivery {delivery_id} does not match the announced sha256/bytes")
            opened = delivery_reader.open_delivery(encrypted, self.identity, hub_jwk, out / delivery_id)
            results.append(
                {
                    "delivery_id": delivery_id,
                    "hub_id": keys[base]["hub_id"],
                    "encrypted": str(encrypted),
                    "directory": str(opened.directory),
                    "camera": opened.manifest["camera"],
                    "start": opened.manifest["start"],
                    "end": opened.manifest["end"],
                    "files": [f["name"] for f in opened.manifest["files"]],
                    "audit_seq": opened.manifest["audit"]["seq"],
                }
            )
        return results

    def live(
        self, request_id: str, out: Path, seconds: float, camera: str | None = None,
        turn: tuple[str, str, str] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """§2.4: watch the granted livestream over WHEP and stream-copy up to `seconds` to the MP4 `out`.
        `turn` (url, username, password): media only through that TURN server (through a relay, §7.3)."""
        import asyncio

        from hub.egress.ice import turn_configuration
        from hub.egress.whep_client import WhepError, save_livestream

        configuration = turn_configuration(*turn) if turn else None
        state = self.status(request_id)
        if state.get("status") != "live":
            raise AgencyError(f"request {request_id} is {state.get('status')}, not live")
        url = state["live"]["url"] + (f"?camera={camera}" if camera else "")
        # The answer must be signed by this hub's key (camhub_protocol/whep.py): through a relay its
        # id is in the URL, which pins the key the relay hands out.
        hub = self.hub()
        pinned = re.search(r"/hubs/([A-Za-z0-9_-]{43})$", self.base_path)
        if jwk_thumbprint(hub["public_jwk"]) != hub["hub_id"] or (
            pinned and hub["hub_id"] != pinned.group(1)
        ):
            raise AgencyError("the hub's key does not match the expected hub_id")
        try:
            frames = asyncio.run(
                save_livestream(
                    url, out, seconds, sign=self.sign_headers, configuration=configuration,
                    hub_jwk=hub["public_jwk"],
                )
            )  # fmt: skip
        except WhepError as exc:
            raise AgencyError(f"HTTP {exc.status}: {exc.body}", exc.status) from exc
        return {"file": str(out), "frames": frames, "not_after": state["live"]["not_after"]}


def keygen(directory: Path) -> dict[str, Any]:
    """A new agency identity: Ed25519 signing key (PEM) + public JWK, age X25519 identity + recipient."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / SIGNING_KEY).exists() or (directory / AGE_IDENTITY).exists():
        raise AgencyError(f"{directory} already holds agency keys; refusing to overwrite")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_secret(directory / SIGNING_KEY, pem)
    jwk = okp_public_jwk(key.public_key())
    (directory / PUBLIC_JWK).write_text(json.dumps(jwk) + "\n")
    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    # The same layout `age-keygen` writes, so the stock `age -d -i age.key` decrypts deliveries.
    write_secret(directory / AGE_IDENTITY, f"# public key: {recipient}\n{identity}\n".encode("ascii"))
    (directory / AGE_RECIPIENT).write_text(recipient + "\n")
    return {"keyid": jwk_thumbprint(jwk), "sig_jwk": jwk, "recipient": recipient, "directory": str(directory)}


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="camhub-agency", description="Reference camhub agency client.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="the hub's base URL (on the LAN)")
        p.add_argument("--relay", help="a camhub-relay's public URL (PROTOCOL §7); with --hub or --area")
        p.add_argument("--hub", help="the hub_id to reach through --relay")
        p.add_argument("--area", help="a 5-character geohash cell: an area request through --relay (§7.4)")
        p.add_argument("--key", required=True, type=Path, help="directory made by `camhub-agency keygen`")
        p.add_argument("--cafile", help="CA certificate for an https:// hub")

    p = sub.add_parser("keygen", help="make a signing key and an age identity")
    p.add_argument("dir", type=Path)
    p = sub.add_parser("request", help="ask for footage or a livestream (§2.1)")
    common(p)
    p.add_argument("--hub-id", help="the hub_id to sign for (default: read from GET /api/v1/hub)")
    p.add_argument("--camera", action="append", required=True)
    p.add_argument("--start", help="RFC 3339 UTC (clip)")
    p.add_argument("--end", help="RFC 3339 UTC (clip)")
    p.add_argument("--live-max-seconds", type=int, help="ask for a livestream of at most N seconds")
    p.add_argument("--case-id", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--legal-basis", choices=("consent", "warrant", "exigent"), default="consent")
    p.add_argument("--reference", help="warrant number or other reference")
    p.add_argument("--contact", required=True)
    p = sub.add_parser("status", help="poll a request (§2.2)")
    common(p)
    p.add_argument("request_id")
    p = sub.add_parser("fetch", help="download, decrypt and verify the deliveries (§2.3)")
    common(p)
    p.add_argument("request_id")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--hub-id", help="refuse unless the hub's key has this hub_id")
    p = sub.add_parser("live", help="save N seconds of a granted livestream to an MP4 (WHEP, §2.4)")
    common(p)
    p.add_argument("request_id")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--camera", help="one of the granted cameras (default: the first)")
    p.add_argument("--turn", help="through a relay: its TURN server, turn:host:port?transport=udp (§7.3)")
    p.add_argument("--turn-username", default="")
    p.add_argument("--turn-password", default="")
    return parser


def _base_url(args: argparse.Namespace) -> str:
    """`--url URL`, or `--relay URL` with `--hub HUB_ID` (→ URL/hubs/HUB_ID) or `--area CELL`."""
    if args.relay:
        if args.url or bool(args.hub) == bool(args.area):
            raise AgencyError("--relay needs exactly one of --hub or --area, and no --url")
        relay = args.relay.rstrip("/")
        return f"{relay}/hubs/{args.hub}" if args.hub else f"{relay}/areas/{args.area}"
    if not args.url or args.hub or args.area:
        raise AgencyError("give --url, or --relay with --hub or --area")
    return args.url


def main(argv: list[str] | None = None) -> int:
    from hub.consent.commands import join_id_options

    args = build_parser().parse_args(join_id_options(sys.argv[1:] if argv is None else argv))
    from camhub_protocol.errors import ConsentError

    try:
        if args.command == "keygen":
            _print(keygen(args.dir))
            return 0
        agency = Agency(args.key, _base_url(args), args.cafile)
        if args.command == "request":
            live = args.live_max_seconds is not None
            fields = {
                "case_id": args.case_id,
                "kind": "live" if live else "clip",
                "cameras": args.camera,
                "start": None if live else args.start,
                "end": None if live else args.end,
                "live_max_seconds": args.live_max_seconds,
                "reason": args.reason,
                "legal_basis": {"type": args.legal_basis, "reference": args.reference},
                "contact": args.contact,
            }
            _print(agency.request(fields, args.hub_id or args.hub))
        elif args.command == "status":
            _print(agency.status(args.request_id))
        elif args.command == "fetch":
            _print(agency.fetch(args.request_id, args.out, args.hub_id or args.hub))
        elif args.command == "live":
            turn = (args.turn, args.turn_username, args.turn_password) if args.turn else None
            _print(agency.live(args.request_id, args.out, args.seconds, args.camera, turn))
    except AgencyError as exc:
        _print(exc.body if isinstance(exc.body, dict) else {"error": "agency_client", "detail": str(exc)})
        return 1
    except ConsentError as exc:
        _print(exc.to_json())
        return 1
    except OSError as exc:
        print(f"camhub-agency: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
