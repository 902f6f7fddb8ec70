-- Owner notifications (PROTOCOL §8): which channels and events notify (one JSON row the owner edits in
-- Settings, validated by hub/notify/settings.py on every read), and the Web Push subscriptions of the
-- owner's browsers. A subscription's keys only let the hub encrypt to that browser; they are no secret
-- of the owner's, but the endpoint is a capability URL: kept here (database 0600), never in a GET.
CREATE TABLE owner_notifications (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    settings    TEXT NOT NULL,
    updated_at  REAL NOT NULL
);

CREATE TABLE push_subscriptions (
    id          TEXT PRIMARY KEY,
    endpoint    TEXT NOT NULL UNIQUE,
    p256dh      TEXT NOT NULL,
    auth        TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  REAL NOT NULL
);
