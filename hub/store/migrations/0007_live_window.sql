-- A livestream approval allows `live_max_seconds` of watching in all, not per connection: the window
-- opens at the first connection the gate lets through, and reconnecting does not reset it.
ALTER TABLE grants ADD COLUMN live_started_at REAL;
