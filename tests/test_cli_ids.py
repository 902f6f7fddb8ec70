"""Ids are base64url and 1 in 32 starts with "-": an id option's value must never be taken for an
option (it was: `camhub owner approve --recipient -Xy…` failed with "expected one argument")."""

from __future__ import annotations

from hub.agency_client import build_parser as agency_parser
from hub.cli import build_parser
from hub.consent.commands import join_id_options

KEYID = "-Xy3_bL0wJq2H8c4nRkV9sT1mA6pZ5eD7fG0hI2jK4l"


def test_id_options_keep_values_that_start_with_a_dash() -> None:
    argv = ["owner", "approve", "--request-id", "-r1", "--request-sha256", "0" * 64,
            "--recipient", KEYID, "--camera", "front"]  # fmt: skip
    args = build_parser().parse_args(join_id_options(argv))
    assert (args.recipient, args.request_id, args.camera) == (KEYID, "-r1", ["front"])
    args = build_parser().parse_args(join_id_options(["owner", "revoke-key", "--kid", KEYID]))
    assert args.kid == KEYID
    args = agency_parser().parse_args(join_id_options(["fetch", "--url", "u", "--key", "k", "--out", "o",
                                                       "--hub-id", KEYID, "--", "-req"]))  # fmt: skip
    assert (args.hub_id, args.request_id) == (KEYID, "-req")
    # Through a relay the hub id is an option too (PROTOCOL §7): `--relay URL --hub -Xy…`.
    args = agency_parser().parse_args(join_id_options(["status", "--relay", "r", "--hub", KEYID, "--key", "k",
                                                       "--", "-req"]))  # fmt: skip
    assert (args.hub, args.request_id) == (KEYID, "-req")


def test_only_id_options_are_joined_and_nothing_after_double_dash() -> None:
    assert join_id_options(["--recipient", "a", "--camera", "-b"]) == ["--recipient=a", "--camera", "-b"]
    assert join_id_options(["--", "--recipient", "x"]) == ["--", "--recipient", "x"]
    assert join_id_options(["--recipient"]) == ["--recipient"]  # argparse reports the missing value
