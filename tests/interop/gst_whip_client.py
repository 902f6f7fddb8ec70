"""A WHIP client nobody here wrote the media stack of: GStreamer's webrtcbin (libnice ICE, its own
DTLS with an RSA certificate, its own RTP packetiser), driven by ~100 lines of signalling (RFC 9725).
Debian 12 has no whipsink, and its simple-whip-client aborts (SERVER_NOTES), hence this script.

    /usr/bin/python3 tests/interop/gst_whip_client.py URL TOKEN --seconds 6 [--profile high]

Prints `answer <status>` after the POST (the hub's status; on 4xx/5xx also the body) and
`connected` once ICE and DTLS are up, sends for --seconds, DELETEs the session, exits 0.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from urllib.parse import urljoin

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

PROFILES = {"baseline": "constrained-baseline", "high": "high"}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--profile", choices=sorted(PROFILES), default="baseline")
    p.add_argument("--codec", choices=("h264", "vp8"), default="h264")
    args = p.parse_args()

    Gst.init(None)
    if args.codec == "h264":
        enc = (
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=300 "
            f"! video/x-h264,profile={PROFILES[args.profile]} ! rtph264pay config-interval=-1 "
            "! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000"
        )
    else:
        enc = "vp8enc deadline=1 ! rtpvp8pay ! application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000"
    pipe = Gst.parse_launch(
        "webrtcbin name=send bundle-policy=max-bundle "
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 "
        f"! videoconvert ! {enc} ! send."
    )
    webrtc = pipe.get_by_name("send")
    # Send only (RFC 9725 §4.2: the publisher's offer is sendonly).
    loop = GLib.MainLoop()
    state = {"resource": None, "code": 0}

    def fail(message: str, code: int = 1) -> None:
        print(message, flush=True)
        state["code"] = code
        loop.quit()

    def on_gathering(element: Gst.Element, _pspec: object) -> None:
        if element.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            return
        offer = element.get_property("local-description").sdp.as_text()
        request = urllib.request.Request(
            args.url,
            data=offer.encode(),
            method="POST",
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {args.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as resp:
                answer_sdp = resp.read().decode()
                state["resource"] = urljoin(args.url, resp.headers["Location"])
                print(f"answer {resp.status}", flush=True)
        except urllib.error.HTTPError as exc:
            fail(f"answer {exc.code} {exc.read().decode(errors='replace')}", 0)
            return
        _res, sdp = GstSdp.SDPMessage.new_from_text(answer_sdp)
        answer = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        element.emit("set-remote-description", answer, None)

    def on_offer(promise: Gst.Promise, element: Gst.Element) -> None:
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            fail(f"no offer: {reply.to_string() if reply is not None else None}")
            return
        element.emit("set-local-description", offer, None)

    def on_negotiation(element: Gst.Element) -> None:
        promise = Gst.Promise.new_with_change_func(on_offer, element)
        element.emit("create-offer", None, promise)

    def on_connection(element: Gst.Element, _pspec: object) -> None:
        st = element.get_property("connection-state")
        if st == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            print("connected", flush=True)
            GLib.timeout_add(int(args.seconds * 1000), stop)
        elif st == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            fail("connection failed")

    def stop() -> bool:
        if state["resource"]:
            req = urllib.request.Request(
                state["resource"], method="DELETE", headers={"Authorization": f"Bearer {args.token}"}
            )
            try:
                urllib.request.urlopen(req, timeout=10).close()
                print("deleted", flush=True)
            except urllib.error.URLError as exc:
                print(f"delete failed: {exc}", flush=True)
        loop.quit()
        return False

    def on_message(_bus: Gst.Bus, message: Gst.Message) -> None:
        if message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            fail(f"error {err.message} {debug}")

    webrtc.connect("on-negotiation-needed", on_negotiation)
    webrtc.connect("notify::ice-gathering-state", on_gathering)
    webrtc.connect("notify::connection-state", on_connection)
    bus = pipe.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)
    pipe.set_state(Gst.State.PLAYING)
    # Set the transceiver to send-only once webrtcbin made it (on linking the sink pad).
    transceiver = webrtc.emit("get-transceiver", 0)
    if transceiver is not None:
        transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
    GLib.timeout_add_seconds(60, lambda: fail("timed out") or False)
    loop.run()
    pipe.set_state(Gst.State.NULL)
    return int(state["code"])


if __name__ == "__main__":
    sys.exit(main())
