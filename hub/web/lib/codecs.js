// Can this browser play what the hub recorded? H.265 is recorded as the camera sent it (an hvc1
// sample entry); a browser without an H.265 decoder (Debian's Chromium, Firefox) gets the H.264 copy
// the hub makes of the segment being watched (GET /api/v1/owner/segments/{id}/h264.mp4). The
// recording, and anything delivered to an agency, stays the camera's H.265.

// Main profile, level 3.1: what the question is about is the codec, not the exact level.
const HEVC_MP4 = 'video/mp4; codecs="hvc1.1.6.L93.B0"';

export function canPlayHevc(video) {
  if (window.MediaSource?.isTypeSupported?.(HEVC_MP4)) return true;
  return (video || document.createElement("video")).canPlayType(HEVC_MP4) === "probably";
}

// The URL to play segment `seg` ({id, codec}) from in `video`, and whether it is the H.264 copy.
export function segmentSource(seg, video) {
  const copy = seg.codec === "hevc" && !canPlayHevc(video);
  return { src: copy ? `/api/v1/owner/segments/${seg.id}/h264.mp4` : `/api/v1/owner/segments/${seg.id}.mp4`, copy };
}
