"""Camera → packets. Every source implements `hub.ingest.source.PacketSource` (open, packets, close)."""
