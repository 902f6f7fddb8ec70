"""Receiving encoded H.264 from aiortc without decoding it — for chosen receivers only.

aiortc has no public API for encoded frames: each `RTCRtpReceiver` hands every reassembled frame to a
decoder thread (`aiortc.rtcrtpreceiver.decoder_worker`) that asks the module-level
`aiortc.rtcrtpreceiver.get_decoder(codec)` for a decoder. `install()` replaces that one name with a
function that returns a pass-through "decoder" — the depacketized access unit (Annex B, from aiortc's
RFC 6184 depayloader) as an `av.Packet` with its 90 kHz RTP timestamp as pts — **only** in the decoder
thread of a receiver registered with `receive_encoded()`; every other receiver in the process (the
hub's own viewers, test clients) keeps aiortc's decoder. The registered receiver's track then
returns `av.Packet`s from `recv()` instead of `av.VideoFrame`s.

Used by WHIP ingest (`hub/ingest/whip.py`: record what the camera sent, byte for byte) and by
`WhepViewer(encoded=True)` (save a livestream without re-encoding it).

It relies on the private attribute `RTCRtpReceiver._RTCRtpReceiver__decoder_thread`, so aiortc is
pinned to the range it was tested with (pyproject `aiortc>=1.14,<1.17`, checked here at install);
`tests/ingest/test_whip.py` fails if the mechanism stops working (recorded NAL units must equal what
the camera sent) or leaks (a normal viewer in the same process must still get decoded frames).
"""

from __future__ import annotations

import threading
import weakref
from fractions import Fraction
from typing import Any

import aiortc
import aiortc.rtcrtpreceiver
import av
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame

from hub.ingest.source import nal_units

RTP_CLOCK = Fraction(1, 90_000)  # RFC 6184 §5.1
TESTED_AIORTC = ((1, 14), (1, 17))  # [min, max): keep in step with pyproject's pin

_receivers: weakref.WeakSet[RTCRtpReceiver] = weakref.WeakSet()
_aiortc_get_decoder: Any = None
_install_lock = threading.Lock()


class PassthroughUnavailable(RuntimeError):
    """This aiortc cannot hand out encoded frames (version outside the tested range, internals moved)."""


class _PassThroughDecoder:
    def decode(self, encoded_frame: JitterFrame) -> list[av.Packet]:
        packet = av.Packet(encoded_frame.data)
        packet.pts = packet.dts = encoded_frame.timestamp
        packet.time_base = RTP_CLOCK
        return [packet]


def _get_decoder(codec: Any) -> Any:
    # Runs in a receiver's decoder thread (aiortc.rtcrtpreceiver.decoder_worker), on its first frame.
    current = threading.current_thread()
    for receiver in list(_receivers):
        if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is current:
            if codec.mimeType.lower() != "video/h264":
                raise ValueError(f"encoded pass-through handles H.264 only, not {codec.mimeType}")
            return _PassThroughDecoder()
    return _aiortc_get_decoder(codec)


def install() -> None:
    """Put the pass-through hook in place; idempotent. Raises PassthroughUnavailable."""
    global _aiortc_get_decoder
    with _install_lock:
        if _aiortc_get_decoder is not None:
            return
        version = tuple(int(x) for x in aiortc.__version__.split(".")[:2])
        lo, hi = TESTED_AIORTC
        module = aiortc.rtcrtpreceiver
        if not (lo <= version < hi):
            raise PassthroughUnavailable(
                f"aiortc {aiortc.__version__} is outside the tested range {lo}..{hi}"
            )
        if not hasattr(module, "get_decoder") or not hasattr(module, "decoder_worker"):
            raise PassthroughUnavailable("aiortc.rtcrtpreceiver no longer has get_decoder/decoder_worker")
        _aiortc_get_decoder = module.get_decoder
        module.get_decoder = _get_decoder


def receive_encoded(receiver: RTCRtpReceiver) -> None:
    """Make `receiver`'s track return encoded `av.Packet`s. Call before its first frame arrives
    (any time before the remote description is applied is safe: frames flow only after DTLS)."""
    install()
    _receivers.add(receiver)


def is_encoded(item: object) -> bool:
    """True for what a registered receiver's track returns; a decoded frame here means the hook
    no longer takes effect (aiortc internals moved) — callers refuse rather than re-encode."""
    return isinstance(item, av.Packet)


NAL_IDR = 5  # ITU-T H.264 Table 7-1


def is_idr(data: bytes) -> bool:
    """True if the Annex B access unit holds an IDR slice (a decoder can start here)."""
    return any(nal[0] & 0x1F == NAL_IDR for nal in nal_units(data))


def probe_size(access_unit: bytes) -> tuple[int, int]:
    """Width and height from decoding one keyframe (once per new SPS; never a transcode). Blocking."""
    ctx = av.CodecContext.create("h264", "r")
    frames = ctx.decode(av.Packet(access_unit)) + ctx.decode(None)
    if not frames:
        raise ValueError("keyframe did not decode")
    return frames[0].width, frames[0].height
