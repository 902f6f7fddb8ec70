-- Issue 16. Segments may carry the camera's audio beside the video: `audio_codec` is the codec of
-- that track as recorded ("aac", "opus"), NULL when there is none (audio is off by default). The
-- video codec was already indexed (`codec`: "h264" or "hevc"); the player reads both to tell the
-- owner what the browser cannot play.
ALTER TABLE segments ADD COLUMN audio_codec TEXT;

-- A grant says whether the camera's audio may leave with the footage (PROTOCOL §3 `scope.audio`):
-- 0 means clips and livestreams to that agency carry video only.
ALTER TABLE grants ADD COLUMN audio INTEGER NOT NULL DEFAULT 0;
