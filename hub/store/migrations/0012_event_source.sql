-- Issue 16 (ONVIF). Who saw an event: 'hub' (the hub's own motion analysis) or 'camera' (reported
-- by the camera: doorbell presses, and an ONVIF camera's own motion events, recorded beside the
-- hub's). Presses were always the camera's.
ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT 'hub' CHECK (source IN ('hub', 'camera'));
UPDATE events SET source = 'camera' WHERE kind = 'press';
