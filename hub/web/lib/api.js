// The hub's JSON API from the page: same origin only, the session cookie goes along by itself
// (HttpOnly, so this script never sees it), and every state change carries the CSRF token.

let csrf = null;
let onUnauthorized = () => {};

export function setCsrf(token) {
  csrf = token;
}

export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export class ApiError extends Error {
  constructor(status, code, detail, data = null) {
    super(detail ? `${code}: ${detail}` : code);
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.data = data; // the whole error body, e.g. the `field` a settings change names
  }
}

async function request(method, path, { json, body, contentType } = {}) {
  const headers = {};
  if (method !== "GET" && method !== "HEAD" && csrf) headers["X-CSRF-Token"] = csrf;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (contentType) {
    headers["Content-Type"] = contentType;
  }
  const res = await fetch(path, { method, headers, body, credentials: "same-origin", cache: "no-store" });
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data?.error || `http_${res.status}`, data?.detail || res.statusText, data);
    if (res.status === 401 && data?.error === "no_session") onUnauthorized(err);
    throw err;
  }
  return data;
}

export const get = (path) => request("GET", path);
export const post = (path, json) => request("POST", path, { json });
export const patch = (path, json) => request("PATCH", path, { json });
export const put = (path, json) => request("PUT", path, { json });
export const del = (path) => request("DELETE", path);

// Owner decisions are a JWS posted as application/jose (PROTOCOL.md §1, §3): the signature is the
// authority; the session and CSRF token ride along because this is the web UI.
export const postDecision = (compact, path = "/api/v1/decisions") =>
  request("POST", path, { body: compact, contentType: "application/jose" });

// A passkey decision (PROTOCOL.md §3.1) is JSON on the same route (also the §6 time confirmation's).
export const postPasskeyDecision = (body, path = "/api/v1/decisions") =>
  request("POST", path, { body: JSON.stringify(body), contentType: "application/json" });

// WHEP (draft-ietf-wish-whep): POST the SDP offer, get the answer and the session's Location.
export async function postSdp(path, sdp) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", "X-CSRF-Token": csrf || "" },
    body: sdp,
    credentials: "same-origin",
  });
  const text = await res.text();
  if (!res.ok) {
    let data = null;
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
    const err = new ApiError(res.status, data?.error || `http_${res.status}`, data?.detail || res.statusText);
    if (res.status === 401) onUnauthorized(err);
    throw err;
  }
  return { answer: text, location: res.headers.get("Location") };
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
  return q.toString();
}
