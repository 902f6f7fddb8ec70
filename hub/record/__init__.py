"""Packets → keyframe-aligned fMP4 segments on disk, indexed in SQLite; recovery, retention, clips."""
