"""`camhub owner|agency|audit ...`: the consent subcommands, thin over `owner_client`, the store and audit.

    camhub owner keygen FILE                                  new owner key (PEM, 0600); prints kid
    camhub owner enroll --pairing-code C --key FILE --url U   enrol the first owner key (§1)
    camhub owner enroll-key --key FILE --new-key FILE2 --url U       owner-signed enroll-key (§3)
    camhub owner revoke-key --key FILE --kid KID --url U             owner-signed revoke-key (§3)
    camhub owner reset --config FILE                          on the box: revoke every owner key (§1)
    camhub owner requests --config FILE                       list requests (on the box; read only)
    camhub owner approve|decline|revoke --key FILE --url U --request-id ID ...   sign a decision (§3)
    camhub owner hold|release-hold --key FILE --url U ...                       keep footage past max age (§3.2)
    camhub owner confirm-time --key FILE --url U              confirm the hub's clock (§6)
    camhub agency add NAME --sig-key JWK --recipient age1... --key FILE --url U
    camhub agency remove KEYID --key FILE --url U
    camhub agency list --config FILE
    camhub audit export --config FILE DIR
    camhub audit verify DIR --hub-key JWK                     (camhub_protocol/audit_verify.py)

Decisions print the hub's JSON answer; an error prints `{"error","detail"}` and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_URL = os.environ.get("CAMHUB_URL", "http://127.0.0.1:8080")
DEFAULT_KEY = os.environ.get("CAMHUB_OWNER_KEY", str(Path("~/.config/camhub/owner.key").expanduser()))


def _print(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def _run_http(fn: Callable[[], Any]) -> int:
    from hub.consent.owner_client import HubHTTPError

    try:
        _print(fn())
    except HubHTTPError as exc:
        _print(exc.body if isinstance(exc.body, dict) else {"error": "http_error", "detail": str(exc)})
        return 1
    except OSError as exc:
        print(f"cannot reach the hub: {exc}", file=sys.stderr)
        return 1
    return 0


def _key(args: argparse.Namespace) -> Any:
    from hub.consent import owner_client

    return owner_client.load_key(Path(args.key))


def _load_jwk(value: str) -> dict[str, Any]:
    """A JWK given inline (`{...}`) or as a file holding one."""
    text = value if value.lstrip().startswith("{") else Path(value).read_text()
    jwk = json.loads(text)
    if not isinstance(jwk, dict):
        raise SystemExit("--sig-key must be a JWK object")
    return {k: jwk[k] for k in ("kty", "crv", "x") if k in jwk}


def _box_config(config_path: str) -> Any:
    """The hub's config, for a command run on the box against its database: a bad config or a path
    that is not the hub's is one clear line and an exit, not a traceback."""
    from hub.cli import _load_config

    cfg = _load_config(config_path)
    if not cfg.db_path.exists():
        raise SystemExit(f"no hub database at {cfg.db_path}: is --config the hub's configuration?")
    return cfg


def _with_store(config_path: str, fn: Callable[..., Any]) -> Any:
    from hub.store import Store

    cfg = _box_config(config_path)

    async def go() -> Any:
        store = await Store.open(cfg.db_path)
        try:
            return await fn(cfg, store)
        finally:
            await store.close()

    return asyncio.run(go())


# --- owner ------------------------------------------------------------------------------------


def cmd_owner_keygen(args: argparse.Namespace) -> int:
    from hub.consent import owner_client

    path = Path(args.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    kid, jwk = owner_client.keygen(path)
    _print({"kid": kid, "public_jwk": jwk, "file": str(path)})
    return 0


def cmd_owner_enroll(args: argparse.Namespace) -> int:
    from hub.consent import owner_client

    return _run_http(
        lambda: owner_client.enroll_first(args.url, _key(args), args.pairing_code, args.name, args.cafile)
    )


def cmd_owner_enroll_key(args: argparse.Namespace) -> int:
    from hub.consent import owner_client

    new = owner_client.load_key(Path(args.new_key))
    fields = {
        "decision": "enroll-key",
        "subject": {"public_jwk": owner_client.public_jwk(new), "name": args.name},
    }
    return _run_http(lambda: owner_client.decide(args.url, _key(args), fields, args.cafile))


def cmd_owner_revoke_key(args: argparse.Namespace) -> int:
    from hub.consent import owner_client

    fields = {"decision": "revoke-key", "subject": {"kid": args.kid}}
    return _run_http(lambda: owner_client.decide(args.url, _key(args), fields, args.cafile))


def _request_fields(args: argparse.Namespace, decision: str) -> dict[str, Any]:
    return {
        "decision": decision,
        "request_id": args.request_id,
        "request_sha256": args.request_sha256,
        "recipient": args.recipient,
    }


def cmd_owner_approve(args: argparse.Namespace) -> int:
    import time

    from camhub_protocol import rfc3339
    from hub.consent import owner_client

    fields = _request_fields(args, "approve")
    live = args.live_max_seconds is not None
    if not live and (args.start is None or args.end is None):
        # The hub refuses a clip scope without both ends (400 invalid_decision); say it before signing.
        raise SystemExit(
            "camhub owner approve: a clip approval needs --start and --end "
            "(a livestream approval needs --live-max-seconds)"
        )
    fields["scope"] = {
        "kind": "live" if live else "clip",
        "cameras": args.camera,
        "start": None if live else args.start,
        "end": None if live else args.end,
        "live_max_seconds": args.live_max_seconds,
        "audio": args.audio,  # signed either way: the owner's CLI states it, like the web UI
    }
    fields["max_fetches"] = args.max_fetches
    fields["not_after"] = args.not_after or rfc3339.format(int(time.time() + args.valid_hours * 3600))
    return _run_http(lambda: owner_client.decide(args.url, _key(args), fields, args.cafile))


def cmd_owner_decline(args: argparse.Namespace) -> int:
    from hub.consent import owner_client

    return _run_http(
        lambda: owner_client.decide(args.url, _key(args), _request_fields(args, "decline"), args.cafile)
    )


def cmd_owner_revoke(args: argparse.Namespace) -> int:
    from hub.consent import owner_client

    fields = {"decision": "revoke", "request_id": args.request_id}
    return _run_http(lambda: owner_client.decide(args.url, _key(args), fields, args.cafile))


def cmd_owner_hold(args: argparse.Namespace) -> int:
    """A signed `hold` (PROTOCOL §3.2): keep footage past the max age until --until."""
    from hub.consent import owner_client

    subject = {
        "cameras": args.camera, "start": args.start, "end": args.end, "until": args.until,
        "reason": args.reason, "asked_by": args.asked_by,
    }  # fmt: skip
    fields = {"decision": "hold", "subject": subject}
    return _run_http(lambda: owner_client.decide(args.url, _key(args), fields, args.cafile))


def cmd_owner_release_hold(args: argparse.Namespace) -> int:
    from hub.consent import owner_client

    fields = {"decision": "release-hold", "subject": {"hold_id": args.hold_id}}
    return _run_http(lambda: owner_client.decide(args.url, _key(args), fields, args.cafile))


def cmd_owner_confirm_time(args: argparse.Namespace) -> int:
    from hub.consent import owner_client

    return _run_http(lambda: owner_client.confirm_time(args.url, _key(args), args.cafile))


def cmd_owner_reset(args: argparse.Namespace) -> int:
    """Take the hub back from a shell on the box (PROTOCOL §1): every owner key and grant revoked,
    a fresh pairing code. Works while the daemon runs."""
    import getpass
    import time

    from hub import datadir
    from hub.consent import owners
    from hub.store import Store

    cfg = _box_config(args.config)
    datadir.become_data_dir_owner(cfg)
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())

    async def go() -> owners.ResetResult:
        store = await Store.open(cfg.db_path)
        try:
            return await store.run(owners.reset, time.time(), f"box:{who}")
        finally:
            await store.close()

    result = asyncio.run(go())
    print(
        f"owner reset: {len(result.keys_revoked)} owner keys and {len(result.grants_revoked)} approvals"
        f" revoked, {result.sessions_ended} browser sessions ended, password cleared"
    )
    print("footage, the audit log and trusted agencies are kept; enrol a new owner key with the code:")
    print(f"pairing code: {result.pairing_code} (valid for 15 minutes, single use)")
    return 0


def cmd_owner_requests(args: argparse.Namespace) -> int:
    from camhub_protocol import rfc3339
    from hub.store import consent as q

    async def listing(cfg: Any, store: Any) -> list[dict[str, Any]]:
        rows = await store.run(q.requests, None, 500)
        return [
            {
                "request_id": r.id,
                "request_sha256": r.body_sha256,
                "recipient": r.agency_keyid,
                "state": r.state,
                "kind": r.kind,
                "cameras": list(r.cameras),
                "start": None if r.start_at is None else rfc3339.format(r.start_at),
                "end": None if r.end_at is None else rfc3339.format(r.end_at),
                "live_max_seconds": r.live_max_seconds,
                "respond_by": rfc3339.format(r.respond_by),
            }
            for r in rows
        ]

    _print(_with_store(args.config, listing))
    return 0


# --- agency -----------------------------------------------------------------------------------


def cmd_agency_add(args: argparse.Namespace) -> int:
    from hub.consent import owner_client

    fields = {
        "decision": "add-agency",
        "subject": {"name": args.name, "sig_jwk": _load_jwk(args.sig_key), "recipient": args.recipient},
    }
    return _run_http(lambda: owner_client.decide(args.url, _key(args), fields, args.cafile))


def cmd_agency_remove(args: argparse.Namespace) -> int:
    from hub.consent import owner_client

    fields = {"decision": "remove-agency", "subject": {"keyid": args.keyid}}
    return _run_http(lambda: owner_client.decide(args.url, _key(args), fields, args.cafile))


def cmd_agency_list(args: argparse.Namespace) -> int:
    from camhub_protocol import rfc3339
    from hub.store import consent as q

    async def listing(cfg: Any, store: Any) -> list[dict[str, Any]]:
        rows = await store.run(q.agencies, args.all)
        return [
            {
                "keyid": a.keyid,
                "name": a.name,
                "recipient": a.recipient,
                "added_at": rfc3339.format(a.added_at),
                "removed_at": None if a.removed_at is None else rfc3339.format(a.removed_at),
            }
            for a in rows
        ]

    _print(_with_store(args.config, listing))
    return 0


# --- audit ------------------------------------------------------------------------------------


def cmd_audit_export(args: argparse.Namespace) -> int:
    from camhub_protocol.keys import HubKey
    from hub.consent.audit import AuditLog

    async def export(cfg: Any, store: Any) -> int:
        if not cfg.hub_key_path.exists():
            raise SystemExit(f"no hub key at {cfg.hub_key_path}: is --config the hub's configuration?")
        hub_key, _ = HubKey.load_or_create_at(cfg.hub_key_path)
        log = await AuditLog.open(store, hub_key)
        return await log.export(Path(args.dir))

    count = _with_store(args.config, export)
    print(f"exported {count} entries to {args.dir}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from camhub_protocol import audit_verify

    argv = [args.path, "--hub-key", args.hub_key]
    for cp in args.checkpoint:
        argv += ["--checkpoint", cp]
    return audit_verify.main(argv)


# Options whose value is an id (base64url: JWK thumbprints, request ids, hub ids) that may start
# with "-", which argparse would take for an option ("expected one argument"): 1 in 32 keyids.
ID_OPTIONS = frozenset({"--recipient", "--request-id", "--kid", "--hub-id", "--keyid", "--hub", "--hold-id"})


def join_id_options(argv: list[str]) -> list[str]:
    """`--recipient -abc` → `--recipient=-abc` for the id options, so argparse keeps the value."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--":
            out.append(arg)
            out.extend(it)
            break
        if arg in ID_OPTIONS:
            value = next(it, None)
            out.append(arg if value is None else f"{arg}={value}")
        else:
            out.append(arg)
    return out


def _http_opts(p: argparse.ArgumentParser, key: bool = True) -> None:
    p.add_argument("--url", default=DEFAULT_URL, help=f"the hub's base URL (default {DEFAULT_URL})")
    p.add_argument("--cafile", help="CA certificate to trust for an https:// hub URL")
    if key:
        p.add_argument("--key", default=DEFAULT_KEY, help=f"owner key file (default {DEFAULT_KEY})")


def _request_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--request-id", required=True)
    p.add_argument("--request-sha256", required=True, help="hex SHA-256 of the request body")
    p.add_argument("--recipient", required=True, help="the requesting agency's keyid")


def add_parsers(sub: Any) -> None:
    """Register `owner`, `agency` and `audit` on the `camhub` subparsers."""
    owner = sub.add_parser("owner", help="owner keys and signed decisions").add_subparsers(
        dest="owner_cmd", required=True
    )
    p = owner.add_parser("keygen", help="make an Ed25519 owner key file (0600) and print its kid")
    p.add_argument("file", nargs="?", default=DEFAULT_KEY)
    p.set_defaults(func=cmd_owner_keygen)
    p = owner.add_parser("enroll", help="enrol the first owner key with the pairing code")
    _http_opts(p)
    p.add_argument("--pairing-code", required=True)
    p.add_argument("--name", default="cli")
    p.set_defaults(func=cmd_owner_enroll)
    p = owner.add_parser("enroll-key", help="enrol another owner key (signed by --key)")
    _http_opts(p)
    p.add_argument("--new-key", required=True, help="key file of the key to enrol")
    p.add_argument("--name", default="cli")
    p.set_defaults(func=cmd_owner_enroll_key)
    p = owner.add_parser("revoke-key", help="revoke an owner key (signed by --key)")
    _http_opts(p)
    p.add_argument("--kid", required=True)
    p.set_defaults(func=cmd_owner_revoke_key)
    p = owner.add_parser(
        "reset",
        help="on the box: revoke every owner key and approval, end owner sessions, print a fresh"
        " pairing code (footage and the audit log are kept; works while the daemon runs)",
    )
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_owner_reset)
    p = owner.add_parser("requests", help="list agency requests (reads the database on the box)")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_owner_requests)
    p = owner.add_parser("approve", help="approve a request, possibly narrower than asked")
    _http_opts(p)
    _request_opts(p)
    p.add_argument("--camera", action="append", required=True)
    p.add_argument("--start", help="RFC 3339 UTC (clip)")
    p.add_argument("--end", help="RFC 3339 UTC (clip)")
    p.add_argument("--live-max-seconds", type=int, help="for a livestream request")
    p.add_argument("--max-fetches", type=int, default=3)
    p.add_argument("--not-after", help="RFC 3339 UTC; default now + --valid-hours")
    p.add_argument("--valid-hours", type=float, default=72.0)
    p.add_argument(
        "--audio",
        action="store_true",
        help="let the cameras' recorded sound leave too (scope.audio; without it: video only)",
    )
    p.set_defaults(func=cmd_owner_approve)
    p = owner.add_parser("decline", help="decline a request")
    _http_opts(p)
    _request_opts(p)
    p.set_defaults(func=cmd_owner_decline)
    p = owner.add_parser("revoke", help="revoke a grant at once")
    _http_opts(p)
    p.add_argument("--request-id", required=True)
    p.set_defaults(func=cmd_owner_revoke)
    p = owner.add_parser("hold", help="keep footage past the max age until --until (PROTOCOL §3.2)")
    _http_opts(p)
    p.add_argument("--camera", action="append", required=True)
    p.add_argument("--start", required=True, help="RFC 3339 UTC")
    p.add_argument("--end", required=True, help="RFC 3339 UTC")
    p.add_argument("--until", required=True, help="RFC 3339 UTC, at most 366 days from now")
    p.add_argument("--reason", required=True, help="why it is kept (shown in Settings)")
    p.add_argument("--asked-by", required=True, help='who asked, e.g. "insurer, claim 42" or "myself"')
    p.set_defaults(func=cmd_owner_hold)
    p = owner.add_parser("release-hold", help="end a hold now")
    _http_opts(p)
    p.add_argument("--hold-id", required=True)
    p.set_defaults(func=cmd_owner_release_hold)
    p = owner.add_parser("confirm-time", help="confirm the hub's clock from this machine's (PROTOCOL §6)")
    _http_opts(p)
    p.set_defaults(func=cmd_owner_confirm_time)

    agency = sub.add_parser("agency", help="agencies the owner trusts").add_subparsers(
        dest="agency_cmd", required=True
    )
    p = agency.add_parser("add", help="trust an agency (owner-signed add-agency)")
    p.add_argument("name")
    p.add_argument("--sig-key", required=True, help="the agency's public signing JWK, inline or a file")
    p.add_argument("--recipient", required=True, help="the agency's age recipient (age1...)")
    _http_opts(p)
    p.set_defaults(func=cmd_agency_add)
    p = agency.add_parser("remove", help="stop trusting an agency (owner-signed remove-agency)")
    p.add_argument("keyid", help="the agency's keyid; put it after -- if it starts with '-'")
    _http_opts(p)
    p.set_defaults(func=cmd_agency_remove)
    p = agency.add_parser("list", help="list trusted agencies (reads the database on the box)")
    p.add_argument("--config", required=True)
    p.add_argument("--all", action="store_true", help="include removed agencies")
    p.set_defaults(func=cmd_agency_list)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(dest="audit_cmd", required=True)
    p = audit.add_parser("export", help="write entries and checkpoints to DIR")
    p.add_argument("--config", required=True)
    p.add_argument("dir")
    p.set_defaults(func=cmd_audit_export)
    p = audit.add_parser(
        "verify", help="recompute the tree, check every checkpoint; prints the first bad seq"
    )
    p.add_argument("path", help="an export directory or an audit-proof.json")
    p.add_argument("--hub-key", required=True, help="the hub's public JWK, inline or a file")
    p.add_argument("--checkpoint", action="append", default=[], help="a checkpoint seen earlier")
    p.set_defaults(func=cmd_audit_verify)
