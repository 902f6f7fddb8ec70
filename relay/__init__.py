"""camhub-relay (PROTOCOL.md §7)."""
