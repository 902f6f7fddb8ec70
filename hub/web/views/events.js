// Events (motion, doorbell presses) with thumbnails; filter by camera, kind and day.

import * as api from "../lib/api.js";
import { h, notice, replace } from "../lib/dom.js";
import { allCameras, cameraOptions, hashParams } from "../lib/route.js";
import { fmtDuration, fmtWhen, fromUnix, localDay } from "../lib/time.js";

export async function render(root) {
  const params = hashParams();
  const cameras = allCameras(await api.get("/api/v1/owner/cameras"));
  const cam = (id) => cameras.find((c) => c.id === id)?.name || id;
  const camSel = h("select", { id: "ev-camera" }, h("option", { value: "" }, "All cameras"), cameraOptions(cameras, params.get("camera")));
  const kindSel = h("select", { id: "ev-kind" },
    h("option", { value: "" }, "All kinds"), h("option", { value: "motion" }, "Motion"), h("option", { value: "press" }, "Doorbell press"));
  const dayInput = h("input", { id: "ev-day", type: "date", value: params.get("day") || localDay() });
  const list = h("div", { class: "grid", id: "event-list", "aria-live": "polite" });

  async function load() {
    const q = api.query({
      camera: camSel.value, kind: kindSel.value, day: dayInput.value,
      tz_offset_min: dayInput.value ? -new Date(`${dayInput.value}T12:00:00`).getTimezoneOffset() : "",
    });
    const { events } = await api.get(`/api/v1/owner/events?${q}`);
    if (!events.length) {
      replace(list, notice("No events match."));
      return;
    }
    replace(list, events.map((e) => {
      const when = fmtWhen(fromUnix(e.start_at));
      // Motion the camera itself reported (ONVIF) is listed beside the hub's own analysis, and says so.
      const what = e.kind === "press" ? "Doorbell press" : e.source === "camera" ? "Motion (reported by the camera)" : "Motion";
      // A press is a moment; motion lasts (or is still going on).
      const length = e.kind === "press" ? "" : e.end_at ? ` · lasted ${fmtDuration(e.end_at - e.start_at)}` : " · still going on";
      // Play from the event's footage range (the camera's configured pre-roll before it starts).
      const href = `#/timeline?${new URLSearchParams({ camera: e.camera_id, t: String(Math.floor(e.footage.start)) })}`;
      return h("article", { class: "card event-card" },
        h("a", { href },
          h("span", { class: "visually-hidden" }, `Play the ${what.toLowerCase()}: `),
          e.has_thumbnail
            ? h("img", { class: "thumb", src: `/api/v1/owner/events/${encodeURIComponent(e.id)}.jpg`, alt: "", loading: "lazy" })
            : h("div", { class: "thumb muted" }, "no picture"),
          h("p", {}, h("span", { class: `pill ${e.kind}` }, e.kind === "press" ? "doorbell" : "motion"), " ", cam(e.camera_id)),
          h("p", { class: "muted" }, `${when}${length}`),
        ),
      );
    }));
  }

  for (const el of [camSel, kindSel, dayInput]) el.addEventListener("change", load);
  replace(root,
    h("h1", {}, "Events"),
    h("div", { class: "card row" },
      h("label", { for: "ev-camera" }, "Camera", camSel),
      h("label", { for: "ev-kind" }, "Kind", kindSel),
      h("label", { for: "ev-day" }, "Day", dayInput),
      h("button", { type: "button", class: "secondary", onclick: () => { dayInput.value = ""; load(); } }, "Any day")),
    list);
  await load();
}
