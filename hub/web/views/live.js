// Live view: each camera over WebRTC (WHEP), relayed by the hub without re-encoding. The page asks
// only to receive; it sends no media. Stopping (or leaving the page) DELETEs the session.

import * as api from "../lib/api.js";
import { h, notice, replace } from "../lib/dom.js";

const MAX_AUTO = 4; // cameras started automatically; more start on demand (a Pi relays, it does not transcode, but the LAN has limits)
const ICE_WAIT_MS = 1500;

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
    this.button = h("button", { type: "button", class: "secondary", onclick: () => (this.pc || this.fallbackOn ? this.stop() : this.start()) }, "Start");
    this.el = h("article", { class: "card live-tile", dataset: { camera: camera.id } },
      h("h2", {}, h("span", {}, camera.name), this.state), this.video, h("div", { class: "actions" }, this.button));
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

  // Without WebRTC (blocked by a browser policy or a network that drops UDP), play the newest
  // recorded segments instead: plain HTTP, a few seconds behind, no transcoding on the hub.
  async fallback(reason) {
    this.fallbackOn = true;
    this.button.textContent = "Stop";
    let lastId = null;
    const next = async () => {
      if (!this.fallbackOn) return;
      const now = Date.now() / 1000;
      let seg = null;
      try {
        const tl = await api.get(`/api/v1/owner/timeline?${api.query({ camera: this.camera.id, start: now - 300, end: now + 60 })}`);
        // First the newest segment; after that, each next one in order as it is written.
        seg = lastId === null ? tl.segments.at(-1) || null : tl.segments.find((s) => s.id > lastId) || null;
      } catch {
        seg = null;
      }
      if (!this.fallbackOn) return;
      if (!seg) {
        this.setState("delayed view: waiting for the next recording");
        this.fallbackTimer = setTimeout(next, 1000);
        return;
      }
      lastId = seg.id;
      this.video.srcObject = null;
      this.video.src = `/api/v1/owner/segments/${seg.id}.mp4`;
      this.video.play().catch(() => {});
      this.setState(`delayed view (recorded, ${Math.max(0, Math.round(now - seg.start))} s behind)`);
    };
    this.onEnded = () => next();
    this.video.addEventListener("ended", this.onEnded);
    console.info(`live view falls back to recordings: ${reason?.message || reason}`);
    await next();
  }

  stopFallback() {
    this.fallbackOn = false;
    clearTimeout(this.fallbackTimer);
    if (this.onEnded) this.video.removeEventListener("ended", this.onEnded);
    this.onEnded = null;
    this.video.pause();
    this.video.removeAttribute("src");
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
