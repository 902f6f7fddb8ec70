"""The hub's outbound link to a camhub-relay (PROTOCOL §7): `link.RelayLink` dials out, `calls` serves."""
