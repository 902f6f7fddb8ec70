// Times: the hub speaks unix seconds (its own JSON) and RFC 3339 UTC with "Z" (PROTOCOL.md); the
// owner reads local time.

export function rfc3339(date) {
  // Whole seconds: the protocol's examples have none, and the hub compares at second precision.
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function fromUnix(seconds) {
  return new Date(seconds * 1000);
}

export function fmtDateTime(date) {
  return date.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function fmtTime(date) {
  return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function fmtUnix(seconds) {
  return seconds === null || seconds === undefined ? "—" : fmtDateTime(fromUnix(seconds));
}

// <input type="datetime-local"> works in local wall time without a zone.
export function toLocalInput(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

export function fromLocalInput(value) {
  const date = new Date(value); // a string without a zone is local time (ECMA-262 Date Time String Format)
  if (Number.isNaN(date.getTime())) throw new Error(`not a date: ${value}`);
  return date;
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

export function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function fmtDuration(seconds) {
  const s = Math.round(seconds);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
