"""The hub answers as the DTLS server whenever the offer lets it choose (RFC 8842 §5.3).

An offer's `a=setup:actpass` leaves the DTLS role to the answerer. aiortc then answers
`a=setup:active` and runs the DTLS client, and its client offers only ECDHE-ECDSA cipher suites:
against a peer with an RSA certificate — GStreamer's webrtcbin (SERVER_NOTES), so OBS-, ffmpeg- and
camera-firmware-style WHIP clients built on it — the handshake fails with "no shared cipher" after
ICE has connected (issue 16: WHIP from webrtcbin got 201 and then recorded nothing). As the DTLS
server (`a=setup:passive`) the client's RSA certificate is accepted and the handshake completes.
Browsers (Chromium) work either way. WHIP (hub/ingest/whip.py) and WHEP (hub/egress/webrtc.py)
both use this.

aiortc has no public knob for it: `RTCDtlsTransport._set_role` is what aiortc itself calls when it
applies a description; setting it to "server" between `setRemoteDescription(offer)` and
`createAnswer()` makes the answer say `passive` (aiortc writes the transport's role into the
answer). aiortc is pinned to a tested range (pyproject); tests/interop/test_whip_gstreamer.py and
tests/ingest/test_whip.py check the answer and a completed handshake.
"""

from __future__ import annotations

from aiortc import RTCPeerConnection


def answer_as_server(pc: RTCPeerConnection) -> None:
    """Call after `setRemoteDescription(offer)`, before `createAnswer()`. Transports whose role the
    offer fixed (`active`/`passive`) are left as the offer wants them."""
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if getattr(transport, "_role", None) == "auto":
            transport._set_role("server")
