// Plain words for what the hub says in codes: error codes become sentences that name the field at
// fault, camera errors (FFmpeg and errno text) become what a homeowner can act on. The raw text stays
// one click away in a "Technical details" toggle (details()), never in the sentence.

import { h } from "./dom.js";

// Error codes of the consent protocol (PROTOCOL.md §1, §3, §6) and of the owner API.
const ERRORS = {
  scope_exceeds_request: "The answer covers more than the agency asked for (cameras, times or livestream length). Choose within what was asked.",
  not_after_passed: "The approval would already have ended: choose how long it stays valid again.",
  not_after_too_late: "An approval can stay valid for at most 30 days: choose a shorter time.",
  request_closed: "This request can no longer be answered: it was already answered, it expired, or the agency was removed.",
  unknown_request: "The hub does not know this request any more. Reload the page.",
  no_active_grant: "There is no approval in force for this request any more (it ended or was already revoked).",
  request_digest_mismatch: "The request changed on the hub since this page loaded. Reload the page and answer again.",
  recipient_mismatch: "The request belongs to a different agency than this page thought. Reload the page.",
  wrong_hub: "This answer was made for a different hub. Reload the page.",
  jti_replayed: "This answer was already sent once. Reload the page.",
  issued_in_future: "This device's clock is ahead of the hub's. Check the time on this device.",
  stale_decision: "This device's clock is behind the hub's. Check the time on this device.",
  clock_unsynced: "The hub's clock is not confirmed, so it refuses every answer for now. Confirm it in Settings.",
  clock_mismatch: "This device's clock and the hub's disagree. Fix the time on the hub (e.g. turn on network time) and confirm again.",
  jws_bad_signature: "The signature of this device did not check out. This device's key may have been replaced: open Devices.",
  unknown_owner_key: "This device's key is not enrolled on the hub (or was revoked). Open Devices to enrol it.",
  owner_key_revoked: "This device's key was revoked, so it cannot approve any more. Open Devices to enrol it again.",
  last_owner_key: "This is the only device that can approve: the hub keeps at least one. Enrol another device first.",
  key_exists: "That device is already enrolled.",
  agency_exists: "An agency with this signing key is already on the list.",
  unknown_agency: "That agency is not on the list any more. Reload the page.",
  invalid_jwk: "The agency's public signing key is not valid: paste it exactly as the agency gave it.",
  bad_pairing_code: "That pairing code is wrong, already used or expired. The hub shows a fresh one at start, or run “camhub pair” on the hub.",
  rate_limited: "Too many tries. Wait a moment and try again.",
  bad_password: "Wrong password.",
  camera_unavailable: "The camera is offline.",
  camera_offline: "The camera is offline.",
  no_session: "You were logged out. Log in again.",
  csrf: "The page was open too long or in another tab. Reload it and try again.",
  read_only: "This camera is set in the hub's configuration file (camhub.toml): change it there.",
  camera_exists: "There is already a camera with this id: choose another id.",
  too_many_sessions: "Too many people are watching live right now. Close another live view and try again.",
  transcode_busy: "This camera sends H.265, which the hub converts for the browser one live view at a time, and another view is open. Close it, or watch the recording.",
  transcode_failed: "This piece of H.265 footage could not be converted for this browser. Download it or watch it in a player that plays H.265.",
};

const FIELDS = {
  id: "Camera id", name: "Name", url: "RTSP URL", username: "Username", password: "Password",
  retention_days: "Keep footage (days)", max_age_days: "Keep footage (days)", quota_gb: "Disk quota",
  quota_bytes: "Disk quota", events_url: "Events URL", record: "Record", motion: "Motion detection",
  audio: "Record sound", rtsp_transport: "Transport",
};

// A sentence for an ApiError (or any Error): the known code's sentence; a settings error names its
// field ("Keep footage (days): must be greater than 0"); otherwise the hub's own detail, without the code.
export function sentence(err) {
  if (!err) return "";
  const field = err.data?.field;
  if (field) {
    const detail = String(err.detail || "").replace(new RegExp(`^${field.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:\\s*`), "");
    return `${FIELDS[field] || field}: ${detail}`;
  }
  if (err.code && ERRORS[err.code]) return ERRORS[err.code];
  if (err.status === 0 || err instanceof TypeError) return "The hub did not answer. Check the connection and try again.";
  return err.detail || err.message || String(err);
}

// The camera's last error (FFmpeg, errno and camhub text) in words; null when there is none. Status
// codes only count where FFmpeg or camhub says they are one ("Server returned 404", "(401)"): a bare
// number would also match a port (":554", ":8554") or an errno. The order matters: the most specific
// first (a stall message also says how long, "no video for 5.2 s (read_timeout_s 5)").
const CAMERA = [
  [/refused the credentials|returned 40[13]\b|\(40[13]\)|unauthori[sz]ed|forbidden|authenticat/i, "The camera refused the user name or password"],
  [/rtp transport|\b461\b|unsupported transport/i, "The camera refused the way camhub asked for video: try another RTSP transport (TCP or UDP) in its settings"],
  [/not recordable|codec/i, "The camera sends video in a format camhub cannot record (it needs H.264 or H.265)"],
  [/watchdog|no packets|no video|no whip media|stall/i, "The camera kept the connection open but sent no video"],
  [/returned 404|\b404 not found|not found/i, "The camera has no video at this address: check the path in the RTSP URL"],
  [/returned 5(?:\d\d|xx)\b|\b5(?:\d\d|xx) server error|server error/i, "The camera answered with a server error"],
  [/connection refused/i, "The camera refused the connection: is it switched on, and is the address right?"],
  [/no route to host|network is unreachable|host is unreachable/i, "The camera cannot be reached on the network"],
  [/name or service not known|name resolution|nodename nor servname/i, "The camera's name cannot be found on the network"],
  [/timed? ?out|timeout/i, "The camera did not answer in time"],
  [/stream ended|end of file|eof|connection reset|broken pipe/i, "The camera stopped sending video"],
];

export function cameraProblem(raw) {
  if (!raw) return null;
  for (const [re, text] of CAMERA) if (re.test(raw)) return text;
  return "The camera cannot be reached";
}

// A "Technical details" toggle holding raw text or nodes (key ids, errors, protocol names).
export function details(...children) {
  return h("details", { class: "tech" }, h("summary", {}, "Technical details"), h("div", { class: "tech-body" }, ...children));
}

// A key id (base64url SHA-256 thumbprint) as a short fingerprint a person can compare: "AbCd EfGh".
export function shortFingerprint(kid) {
  return (kid || "").slice(0, 8).replace(/(.{4})(?=.)/g, "$1 ");
}

export function joinNames(names) {
  if (names.length <= 1) return names.join("");
  return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

// A phone (or any browser) logged in with the password only: it can look, and this is how it can
// also approve. Said in plain words where the owner meets the limit.
export function enrolHelp() {
  return h("div", { class: "notice warn", role: "note" },
    h("p", {}, h("strong", {}, "This device can look, but not approve."), " Approvals are signed with a key kept inside the device itself, and this device has no enrolled key yet. To approve from here:"),
    h("ol", {},
      h("li", {}, "On this device, open ", h("a", { href: "#/devices" }, "Devices"), " and press “Make a key and ask to be enrolled”."),
      h("li", {}, "On a device that can already approve (the one you set camhub up with), open Devices, check that the fingerprint matches, and approve it.")),
    h("p", {}, "Until then, answer from that device."));
}
