"""A camera nobody here wrote: GStreamer's RTSP server (gst-rtsp-server, the stack inside many IP
cameras), run with Debian's python3 and its GObject bindings (SERVER_NOTES: not the project venv).

    /usr/bin/python3 tests/interop/gst_camera.py --port 0 --video h264 --audio aac \
        [--auth basic|digest --user U --password P] [--udp-only]

Prints `ready rtsp://127.0.0.1:<port>/cam` on stdout once it serves, then serves until SIGTERM.
Small pictures (320x240, 10 fps, GOP 10) keep the encoders cheap on a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

VIDEO = {
    # key-int-max = GOP: a keyframe every second at 10 fps, so segments can be cut within a second.
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=300 "
    "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=-1",
    # B-frames (main profile): decode order differs from presentation order, which RTP does not carry.
    "h264b": "x264enc speed-preset=ultrafast key-int-max=10 bframes=2 b-adapt=false bitrate=300 "
    "! video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=-1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=300 "
    "! rtph265pay name=pay0 pt=96 config-interval=-1",
}
AUDIO = {
    "aac": "audio/x-raw,rate=16000,channels=1 ! avenc_aac ! rtpmp4gpay name=pay1 pt=97",
    "aac48": "audio/x-raw,rate=48000,channels=1 ! avenc_aac ! rtpmp4gpay name=pay1 pt=97",
    "pcma": "audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay name=pay1 pt=8",
    "pcmu": "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay name=pay1 pt=0",
    "opus": "audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay name=pay1 pt=98",
}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--video", choices=sorted(VIDEO), default="h264")
    p.add_argument("--audio", choices=sorted(AUDIO))
    p.add_argument("--auth", choices=("basic", "digest"))
    p.add_argument("--user", default="admin")
    p.add_argument("--password", default="secret")
    p.add_argument("--udp-only", action="store_true")
    args = p.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    launch = (
        "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1 "
        f"! videoconvert ! {VIDEO[args.video]}"
    )
    if args.audio:
        launch += f" audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! {AUDIO[args.audio]}"
    launch += " )"
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)
    if args.udp_only:
        # As VLC's server: a TCP (interleaved) SETUP gets 461 Unsupported Transport.
        factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP)
    if args.auth:
        auth = GstRtspServer.RTSPAuth()
        if args.auth == "basic":
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), _user_token())
        else:
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(args.user, args.password, _user_token())
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        # add_role with no fields, then the two permissions a viewer needs (gst-rtsp-server's
        # test-auth example): without them every DESCRIBE gets 401.
        permissions.add_role_from_structure(Gst.Structure.new_empty("user"))
        permissions.add_permission_for_role("user", "media.factory.access", True)
        permissions.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print("cannot attach the RTSP server", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"ready rtsp://127.0.0.1:{server.get_bound_port()}/cam", flush=True)
    loop.run()
    return 0


def _user_token() -> GstRtspServer.RTSPToken:
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "user")
    return token


if __name__ == "__main__":
    sys.exit(main())
