// Live view: each camera over WebRTC (WHEP), relayed by the hub without re-encoding. The page asks
// only to receive; it sends no media. Stopping (or leaving the page) DELETEs the session.

import * as api from "../lib/api.js";
import { h, notice, replace } from "../lib/dom.js";

const MAX_AUTO = 4; // cameras started automatically; more start on demand (a Pi relays, it does not transcode, but the LAN has limits)
const ICE_WAIT_MS = 1500;
const SNAPSHOT_MS = 1000; // the hub caches a still for 1 s: asking faster gets the same picture
const SNAPSHOT_RETRY_MS = 3000;

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
    this.state = h("span", { class: "live-state muted", "aria-live": "polite" }, "stopped");
    this.video = h("video", { autoplay: true, muted: true, playsinline: true, "aria-label": `Live view of ${camera.name}`, dataset: { camera: camera.id } });
    this.snapshot = h("img", { class: "snapshot", hidden: true, alt: `Live still of ${camera.name}`, dataset: { camera: camera.id } });
    this.badge = h("span", { class: "badge snapshot-mode", hidden: true, title: "WebRTC is unavailable: showing a still about every second" }, "snapshot mode");
    this.button = h("button", { type: "button", class: "secondary", onclick: () => (this.pc || this.fallbackOn ? this.stop() : this.start()) }, "Start");
    this.el = h("article", { class: "card live-tile", dataset: { camera: camera.id } },
      h("h2", {}, h("span", {}, camera.name), this.badge, this.state), this.video, this.snapshot, h("div", { class: "actions" }, this.button));
  }

  setState(text) {
    this.state.textContent = text;
  }

  async start() {
    const t0 = performance.now();
    if (typeof RTCPeerConnection !== "function") {
      await this.fallback(new Error("this browser has no WebRTC"));
      return;
    }
    this.button.textContent = "Stop";
    this.setState("connecting…");
    const pc = new RTCPeerConnection({ iceServers: [] }); // LAN only: no STUN/TURN servers, no outside traffic
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addEventListener("track", (ev) => {
      this.video.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === "failed") {
        this.pc = null;
        pc.close();
        this.fallback(new Error("WebRTC connection failed"));
      } else if (pc.connectionState === "closed") {
        this.setState("ended by the hub");
        this.button.textContent = "Retry";
        this.pc = null;
      }
    });
    this.video.addEventListener("playing", () => this.setState(`live (started in ${((performance.now() - t0) / 1000).toFixed(1)} s)`), { once: true });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gatheringDone(pc);
      const { answer, location } = await api.postSdp(`/api/v1/owner/cameras/${encodeURIComponent(this.camera.id)}/whep`, pc.localDescription.sdp);
      this.location = location;
      await pc.setRemoteDescription({ type: "answer", sdp: answer });
    } catch (err) {
      pc.close();
      this.pc = null;
      if (err.code === "camera_unavailable") {
        this.setState("camera offline");
        this.button.textContent = "Retry";
      } else {
        this.fallback(err);
      }
    }
  }

  // Without WebRTC (a browser or policy without it, or ICE that fails on this network), show stills
  // of the live stream instead: the hub decodes one keyframe about every second, shared by every
  // viewer, and only while someone watches (hub/ingest/snapshot.py).
  async fallback(reason) {
    this.fallbackOn = true;
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
      this.setState(`a still about every second (${new Date().toLocaleTimeString()})`);
      next(SNAPSHOT_MS);
    };
    this.snapshot.onerror = () => {
      if (!this.fallbackOn) return;
      this.setState("the camera sends no picture; retrying");
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

  stop() {
    if (this.fallbackOn) this.stopFallback();
    const location = this.location;
    const pc = this.pc;
    this.location = null;
    this.pc = null;
    this.video.srcObject = null;
    this.button.textContent = "Start";
    this.setState("stopped");
    // End the WHEP session first (WHEP §4.3), then drop the peer connection.
    const ended = location ? api.del(location).catch(() => {}) : Promise.resolve();
    ended.finally(() => pc?.close());
  }
}

export async function render(root) {
  const { cameras } = await api.get("/api/v1/owner/cameras");
  if (!cameras.length) {
    replace(root, h("h1", {}, "Live"), notice("No cameras are configured yet. See Settings."));
    return;
  }
  const tiles = cameras.map((c) => new LiveTile(c));
  replace(root, h("h1", {}, "Live"), h("div", { class: "grid live" }, tiles.map((t) => t.el)));
  tiles.slice(0, MAX_AUTO).forEach((t) => t.start());
  const stopAll = () => tiles.forEach((t) => t.stop());
  window.addEventListener("pagehide", stopAll, { once: true });
  return () => {
    window.removeEventListener("pagehide", stopAll);
    stopAll();
  };
}
