// Times: the hub speaks unix seconds (its own JSON) and RFC 3339 UTC with "Z" (PROTOCOL.md); the
// owner reads local time. Every time the owner sees names its zone, and the UTC time beside it
// ("11:04 PM EST (04:04 UTC)"), because agencies, warrants and the hub itself speak UTC: a range
// that is "tonight" here can be "tomorrow" in UTC, and that must never be left unsaid.

export function rfc3339(date) {
  // Whole seconds: the protocol's examples have none, and the hub compares at second precision.
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function fromUnix(seconds) {
  return new Date(seconds * 1000);
}

const fmt = (opts) => new Intl.DateTimeFormat(undefined, opts);
const sameYear = (d) => d.getFullYear() === new Date().getFullYear();

function localDayText(date) {
  return fmt({ weekday: "short", month: "short", day: "numeric", ...(sameYear(date) ? {} : { year: "numeric" }) }).format(date);
}

function utcDayText(date) {
  return fmt({ weekday: "short", month: "short", day: "numeric", timeZone: "UTC" }).format(date);
}

function clockText(date, seconds) {
  return fmt({ hour: "numeric", minute: "2-digit", ...(seconds ? { second: "2-digit" } : {}) }).format(date);
}

function utcClockText(date, seconds) {
  return fmt({ hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: "UTC", ...(seconds ? { second: "2-digit" } : {}) }).format(date);
}

export function zoneName(date = new Date()) {
  const part = fmt({ timeZoneName: "short" }).formatToParts(date).find((p) => p.type === "timeZoneName");
  return part ? part.value : "local time";
}

const isUtcHere = (date) => date.getTimezoneOffset() === 0;
const sameLocalDay = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
const sameUtcDay = (a, b) => a.toISOString().slice(0, 10) === b.toISOString().slice(0, 10);
// The UTC calendar day differs from the local one the reader sees: say which UTC day it is.
const utcDayDiffers = (date) => date.toISOString().slice(0, 10) !== `${date.getFullYear()}-${String(date.getMonth() + 1).padStart(2, "0")}-${String(date.getDate()).padStart(2, "0")}`;
const hasSeconds = (...dates) => dates.some((d) => d.getSeconds() !== 0);

// "Sun, Nov 23, 11:04 PM EST (04:04 UTC, Mon, Nov 24)"; `day: false` leaves out the local day.
export function fmtWhen(date, { day = true, seconds = null } = {}) {
  if (date === null || date === undefined || Number.isNaN(date.getTime?.())) return "—";
  const secs = seconds ?? hasSeconds(date);
  const local = `${day ? `${localDayText(date)}, ` : ""}${clockText(date, secs)} ${zoneName(date)}`;
  if (isUtcHere(date)) return local;
  return `${local} (${utcClockText(date, secs)} UTC${utcDayDiffers(date) ? `, ${utcDayText(date)}` : ""})`;
}

export function fmtUnix(seconds, opts) {
  return seconds === null || seconds === undefined ? "—" : fmtWhen(fromUnix(seconds), opts);
}

// A range: "Sun, Nov 23, 11:04 – 11:05:30 PM EST (04:04–04:05:30 UTC, Mon, Nov 24)". The end gets
// its own day when it falls on another local day; the UTC part names its day(s) when they differ.
export function fmtRange(start, end, { seconds = null } = {}) {
  const secs = seconds ?? hasSeconds(start, end);
  const oneDay = sameLocalDay(start, end);
  const local = `${localDayText(start)}, ${clockText(start, secs)} – ${oneDay ? "" : `${localDayText(end)}, `}${clockText(end, secs)} ${zoneName(end)}`;
  if (isUtcHere(start) && isUtcHere(end)) return local;
  const utcDays = sameUtcDay(start, end) ? utcDayText(start) : null;
  const differs = utcDayDiffers(start) || utcDayDiffers(end) || !oneDay;
  const utc = sameUtcDay(start, end)
    ? `${utcClockText(start, secs)}–${utcClockText(end, secs)} UTC${differs ? `, ${utcDays}` : ""}`
    : `${utcDayText(start)} ${utcClockText(start, secs)} – ${utcDayText(end)} ${utcClockText(end, secs)} UTC`;
  return `${local} (${utc})`;
}

// Just the clock, with zone: "11:08 PM EST" (for things on a day already named nearby).
export function fmtClock(date, { seconds = false } = {}) {
  return `${clockText(date, seconds)} ${zoneName(date)}`;
}

// The clock without zone, for dense lists where the zone is said once (timeline labels).
export function fmtTime(date) {
  return clockText(date, true);
}

export function localDay(date = new Date()) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

// [start, end) of a local calendar day in unix seconds (handles DST days of 23 or 25 hours).
export function dayBounds(day) {
  const [y, m, d] = day.split("-").map(Number);
  const start = new Date(y, m - 1, d);
  const end = new Date(y, m - 1, d + 1);
  return [start.getTime() / 1000, end.getTime() / 1000];
}

// The local day of a date, spelled out ("Sun, Nov 23"), for labels next to time-only fields.
export function fmtDay(date) {
  return localDayText(date);
}

// <input type="time" step="1"> speaks "HH:MM:SS" in local wall time.
export function toTimeInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

// A time of day typed by the owner, placed inside [lo, hi] (an agency's range is at most 24 h, so a
// time of day names at most two instants in it; `prefer` picks the earlier or later of those). Null
// when no instant in the range has that time of day.
export function timeInRange(value, lo, hi, prefer = "earlier") {
  const m = /^(\d{1,2}):(\d{2})(?::(\d{2}))?$/.exec(value || "");
  if (!m) return null;
  const [hh, mm, ss] = [Number(m[1]), Number(m[2]), Number(m[3] || 0)];
  const found = [];
  for (let day = new Date(lo.getFullYear(), lo.getMonth(), lo.getDate()); day <= hi; day = new Date(day.getFullYear(), day.getMonth(), day.getDate() + 1)) {
    const t = new Date(day.getFullYear(), day.getMonth(), day.getDate(), hh, mm, ss);
    if (t >= lo && t <= hi) found.push(t);
  }
  if (!found.length) return null;
  return prefer === "later" ? found[found.length - 1] : found[0];
}

export function fmtBytes(n) {
  if (n < 1000) return `${n} bytes`;
  if (n < 1000 ** 2) return `${Math.round(n / 1000)} kB`;
  if (n < 1000 ** 3) return `${(n / 1000 ** 2).toFixed(1)} MB`;
  return `${(n / 1000 ** 3).toFixed(2)} GB`;
}

// "45 seconds", "1 min 30 s", "2 h 5 min", "6 days 23 h".
export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s === 1 ? "1 second" : `${s} seconds`;
  if (s < 3600) return s % 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s / 60} min`;
  if (s < 2 * 86400) {
    const m = Math.round((s % 3600) / 60);
    return m ? `${Math.floor(s / 3600)} h ${m} min` : `${Math.floor(s / 3600)} h`;
  }
  const h = Math.round((s % 86400) / 3600);
  return h ? `${Math.floor(s / 86400)} days ${h} h` : `${Math.floor(s / 86400)} days`;
}
