// Live view: each camera over WebRTC (WHEP), relayed by the hub without re-encoding. The page asks
// only to receive; it sends no media. Stopping (or leaving the page) DELETEs the session.
//
// A tile never shows a black box without words. The page reads the cameras' state every
// STATUS_MS, and each tile watches its own frames:
//   - the hub says the camera is offline, or frames stop for STALL_MS: "Camera offline — retrying"
//     (or "No picture — retrying" while the hub still sees the camera), and the tile reconnects on
//     its own every RETRY_MS until pictures come again (within ~5 s of the camera going down);
//   - a connection that shows no picture within START_TIMEOUT_MS (the camera being online) stops,
//     says so, and offers a Retry button;
//   - without WebRTC (or if it fails), stills of the live stream about every second.

import * as api from "../lib/api.js";
import { h, notice, replace } from "../lib/dom.js";
import { cameraProblem } from "../lib/words.js";

const MAX_AUTO = 4; // cameras started automatically; more start on demand (a Pi relays, it does not transcode, but the LAN has limits)
const ICE_WAIT_MS = 1500;
const SNAPSHOT_MS = 1000; // the hub caches a still for 1 s: asking faster gets the same picture
const SNAPSHOT_RETRY_MS = 3000;
const STATUS_MS = 2000; // the hub refreshes camera status every 2 s (hub/ingest/camera.py)
const STALL_MS = 3000;
const RETRY_MS = 4000;
const START_TIMEOUT_MS = 10_000;

function gatheringDone(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ICE_WAIT_MS); // host candidates come at once; don't hang on a stray interface
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

class LiveTile {
  constructor(camera) {
    this.camera = camera;
    this.pc = null;
    this.location = null;
    this.wanted = false; // the owner wants this tile live (Start pressed or started automatically)
    this.status(camera.status);
    this.lastFrames = 0;
    this.lastFrameAt = 0;
    this.startedAt = 0;
    this.playing = false;
    this.state = h("span", { class: "live-state muted", "aria-live": "polite" }, "stopped");
    this.video = h("video", { autoplay: true, muted: true, playsinline: true, "aria-label": `Live view of ${camera.name}`, dataset: { camera: camera.id } });
    this.snapshot = h("img", { class: "snapshot", hidden: true, alt: `Live still of ${camera.name}`, dataset: { camera: camera.id } });
    this.messageText = h("span", {});
    this.retryButton = h("button", { type: "button", hidden: true, onclick: () => this.start() }, "Retry");
    this.message = h("div", { class: "live-message", hidden: true, role: "status" }, this.messageText, this.retryButton);
    this.badge = h("span", { class: "badge snapshot-mode", hidden: true, title: "WebRTC is unavailable: showing a still about every second" }, "snapshot mode");
    this.button = h("button", { type: "button", class: "secondary", onclick: () => (this.wanted ? this.stop() : this.start()) }, "Start");
    // Sound (PROTOCOL §2.4): only for a camera whose sound is recorded. The picture starts muted
    // (browsers autoplay only muted media); the browser's own controls unmute it.
    if (camera.audio) this.video.controls = true;
    this.el = h("article", { class: "card live-tile", dataset: { camera: camera.id } },
      h("h2", {}, h("span", {}, camera.name), this.badge, this.state),
      h("div", { class: "live-frame" }, this.video, this.snapshot, this.message),
      h("div", { class: "actions" }, this.button));
    this.video.addEventListener("playing", () => this.gotPicture());
  }

  setState(text) {
    this.state.textContent = text;
  }

  say(text, { retry = false } = {}) {
    if (!text) {
      this.message.hidden = true;
      return;
    }
    this.messageText.textContent = text;
    this.retryButton.hidden = !retry;
    this.message.hidden = false;
  }

  gotPicture() {
    if (!this.playing) this.setState(`live (started in ${((performance.now() - this.startedAt) / 1000).toFixed(1)} s)`);
    this.playing = true;
    this.lastFrameAt = performance.now();
    this.say(null);
  }

  // Called every second by the page: notice frames, stalls, offline cameras and slow starts.
  tick(now) {
    if (!this.wanted || this.fallbackOn) return;
    const frames = this.video.getVideoPlaybackQuality?.().totalVideoFrames ?? 0;
    if (frames > this.lastFrames) {
      this.lastFrames = frames;
      this.gotPicture();
      return;
    }
    const offline = this.online === false;
    if (this.playing && now - this.lastFrameAt > STALL_MS) {
      this.playing = false;
      this.reconnectSoon(offline ? "Camera offline — retrying" : "No picture from the camera — retrying");
    } else if (!this.playing && offline) {
      if (this.pc) this.reconnectSoon("Camera offline — retrying");
      else this.say(`Camera offline — retrying${this.problem ? ` (${this.problem})` : ""}`);
    } else if (!this.playing && this.pc && now - this.startedAt > START_TIMEOUT_MS) {
      this.close();
      this.setState("did not start");
      this.say("The live view did not start within 10 seconds.", { retry: true });
    }
  }

  // Camera status from the hub (GET /api/v1/owner/cameras), every STATUS_MS.
  status(s) {
    this.online = s ? s.online : null;
    this.problem = s && !s.online ? cameraProblem(s.last_error) : null;
  }

  reconnectSoon(text) {
    this.say(text);
    this.setState("retrying");
    this.close();
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.wanted && !this.pc && this.connect(), RETRY_MS);
  }

  async start() {
    this.wanted = true;
    this.button.textContent = "Stop";
    if (typeof RTCPeerConnection !== "function") {
      await this.fallback(new Error("this browser has no WebRTC"));
      return;
    }
    await this.connect();
  }

  async connect() {
    clearTimeout(this.retryTimer);
    this.close();
    this.startedAt = performance.now();
    this.playing = false;
    this.lastFrames = 0;
    if (this.online === false) {
      // No point asking for a stream the hub does not have: keep trying until the camera is back.
      this.say(`Camera offline — retrying${this.problem ? ` (${this.problem})` : ""}`);
      this.setState("retrying");
      this.retryTimer = setTimeout(() => this.wanted && this.connect(), RETRY_MS);
      return;
    }
    this.say(null);
    this.setState("connecting…");
    const pc = new RTCPeerConnection({ iceServers: [] }); // LAN only: no STUN/TURN servers, no outside traffic
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    if (this.camera.audio) pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.addEventListener("track", (ev) => {
      // Picture and sound in one stream on the one <video> (the hub's tracks may name no stream).
      stream.addTrack(ev.track);
      if (this.video.srcObject !== stream) this.video.srcObject = stream;
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === "failed") {
        this.close();
        this.fallback(new Error("WebRTC connection failed"));
      } else if (pc.connectionState === "closed") {
        this.reconnectSoon("The hub ended the live view — retrying");
      }
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringDone(pc);
      const { answer, location } = await api.postSdp(`/api/v1/owner/cameras/${encodeURIComponent(this.camera.id)}/whep`, pc.localDescription.sdp);
      if (pc !== this.pc) {
        if (location) api.del(location).catch(() => {});
        return;
      }
      this.location = location;
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
    } catch (err) {
      if (pc !== this.pc) return;
      if (err.code === "camera_unavailable") {
        this.online = false;
        this.reconnectSoon("Camera offline — retrying");
      } else {
        this.close();
        this.fallback(err);
      }
    }
  }

  // Without WebRTC (a browser or policy without it, or ICE that fails on this network), show stills
  // of the live stream instead: the hub decodes one keyframe about every second, shared by every
  // viewer, and only while someone watches (hub/ingest/snapshot.py).
  async fallback(reason) {
    this.fallbackOn = true;
    this.say(null);
    this.button.textContent = "Stop";
    this.video.hidden = true;
    this.snapshot.hidden = false;
    this.badge.hidden = false;
    let n = 0;
    const next = (delay) => {
      clearTimeout(this.fallbackTimer);
      this.fallbackTimer = setTimeout(() => {
        if (this.fallbackOn) this.snapshot.src = `/api/v1/owner/cameras/${encodeURIComponent(this.camera.id)}/snapshot.jpg?n=${++n}`;
      }, delay);
    };
    this.snapshot.onload = () => {
      if (!this.fallbackOn) return;
      this.say(null);
      this.setState(`a still about every second (${new Date().toLocaleTimeString()})`);
      next(SNAPSHOT_MS);
    };
    this.snapshot.onerror = () => {
      if (!this.fallbackOn) return;
      this.setState("the camera sends no picture; retrying");
      this.say("Camera offline — retrying");
      next(SNAPSHOT_RETRY_MS);
    };
    console.info(`live view falls back to snapshots: ${reason?.message || reason}`);
    this.setState("loading a still…");
    next(0);
  }

  stopFallback() {
    this.fallbackOn = false;
    clearTimeout(this.fallbackTimer);
    this.snapshot.onload = this.snapshot.onerror = null;
    this.snapshot.removeAttribute("src");
    this.snapshot.hidden = true;
    this.badge.hidden = true;
    this.video.hidden = false;
  }

  // Drop the current connection (if any), ending its WHEP session first (WHEP §4.3).
  close() {
    const location = this.location;
    const pc = this.pc;
    this.location = null;
    this.pc = null;
    this.video.srcObject = null;
    const ended = location ? api.del(location).catch(() => {}) : Promise.resolve();
    ended.finally(() => pc?.close());
  }

  stop() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    if (this.fallbackOn) this.stopFallback();
    this.close();
    this.playing = false;
    this.say(null);
    this.button.textContent = "Start";
    this.setState("stopped");
  }
}

export async function render(root) {
  // A household member's list carries their rights: only the cameras they may watch live here.
  const cameras = (await api.get("/api/v1/owner/cameras")).cameras.filter((c) => !c.rights || c.rights.live);
  if (!cameras.length) {
    replace(root, h("h1", {}, "Live"), notice("No cameras are configured yet. See Settings."));
    return;
  }
  const tiles = cameras.map((c) => new LiveTile(c));
  replace(root, h("h1", {}, "Live"), h("div", { class: "grid live" }, tiles.map((t) => t.el)));
  tiles.slice(0, MAX_AUTO).forEach((t) => t.start());
  const ticker = setInterval(() => {
    const now = performance.now();
    for (const t of tiles) t.tick(now);
  }, 1000);
  const poll = setInterval(async () => {
    try {
      const { cameras: fresh } = await api.get("/api/v1/owner/cameras");
      for (const t of tiles) t.status(fresh.find((c) => c.id === t.camera.id)?.status || null);
    } catch {
      /* the next poll tries again */
    }
  }, STATUS_MS);
  const stopAll = () => {
    clearInterval(ticker);
    clearInterval(poll);
    tiles.forEach((t) => t.stop());
  };
  window.addEventListener("pagehide", stopAll, { once: true });
  return () => {
    window.removeEventListener("pagehide", stopAll);
    stopAll();
  };
}
