"""A camera's audio, made recordable in fragmented MP4 with as little work as possible.

What cameras send (RTSP SDP, RFC 3640 / RFC 3551 / RFC 7587) and what the hub records:

| camera sends | recorded as | how |
|---|---|---|
| AAC (MPEG-4 AudioSpecificConfig in the SDP) | AAC | stream copy |
| Opus | Opus | stream copy; the `OpusHead` the MP4 `dOps` box needs is built from the SDP's rate and channels (RFC 7845 §5.1), since RTP carries none |
| G.711 A-law / µ-law (PCMA/PCMU) | AAC | **transcoded**: ISO BMFF as FFmpeg's mp4 muxer writes it has no sample entry for G.711 ("'mp4' format does not support 'pcm_alaw'"), and browsers would not play it either. 8 kHz mono: a few ms of CPU per second of audio |

Anything else is not recorded (logged once per connection): the video still is.

Everything here runs on the demux thread (hub/ingest/rtsp.py), never on the event loop.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import av.error

log = logging.getLogger(__name__)

COPIED = frozenset({"aac", "opus"})
TRANSCODED = frozenset({"pcm_alaw", "pcm_mulaw"})
RECORDABLE = COPIED | TRANSCODED
AAC_FRAME = 1024  # samples per AAC-LC frame (ISO/IEC 14496-3)
AAC_BITRATE = 32_000


@dataclass(frozen=True)
class AudioParams:
    """What a muxer needs to add the audio stream without decoding it."""

    codec: str  # as recorded: "aac" or "opus"
    sample_rate: int
    channels: int
    time_base: Fraction
    extradata: bytes = b""
    source_codec: str = ""  # as the camera sent it (differs when transcoded: "pcm_alaw")

    @property
    def transcoded(self) -> bool:
        return self.source_codec != self.codec


def opus_head(channels: int, sample_rate: int) -> bytes:
    """An RFC 7845 §5.1 identification header: version 1, pre-skip 312 (libopus's usual 6.5 ms at
    48 kHz), the input rate, 0 dB gain, channel mapping family 0 (mono/stereo)."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 312, sample_rate, 0, 0)


class AudioTrack:
    """One connection's audio stream: packets out as (data, pts, duration) in `params.time_base`."""

    def __init__(self, camera_id: str, stream: Any) -> None:
        cc = stream.codec_context
        self.camera_id = camera_id
        self.stream = stream
        self.source_codec = cc.name
        rate = int(cc.sample_rate or 8000)
        channels = int(getattr(cc, "channels", 0) or cc.layout.nb_channels or 1)
        self._decoder: Any = None
        self._encoder: Any = None
        self._resampler: Any = None
        self._next_pts: int | None = None
        if self.source_codec in COPIED:
            extradata = bytes(cc.extradata or b"")
            if self.source_codec == "opus" and not extradata:
                extradata = opus_head(channels, rate)
            tb = Fraction(stream.time_base.numerator, stream.time_base.denominator)
            self.params = AudioParams(self.source_codec, rate, channels, tb, extradata, self.source_codec)
            return
        # G.711: decode, then AAC-LC at the same rate, mono (what a doorbell microphone has).
        self._decoder = av.CodecContext.create(self.source_codec, "r")
        self._decoder.sample_rate = rate
        self._decoder.layout = "mono"
        enc = av.CodecContext.create("aac", "w")
        enc.sample_rate = rate
        enc.layout = "mono"
        enc.format = "fltp"
        enc.bit_rate = AAC_BITRATE
        enc.time_base = Fraction(1, rate)
        enc.open()
        self._encoder = enc
        self._resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate, frame_size=AAC_FRAME)
        self.params = AudioParams(
            "aac", rate, 1, Fraction(1, rate), bytes(enc.extradata or b""), self.source_codec
        )

    def convert(self, raw: Any) -> list[tuple[bytes, int | None, int]]:
        """One demuxed packet → what to record: (data, pts, duration) in `params.time_base`."""
        if self._encoder is None:
            return [(bytes(raw), raw.pts, raw.duration or 0)]
        if raw.pts is not None and self._next_pts is None:
            # The encoder's output counts samples from the first packet's time on.
            self._next_pts = int(raw.pts * raw.time_base / self.params.time_base)
        out: list[tuple[bytes, int | None, int]] = []
        try:
            # camhub's reader yields its audio wrapped (hub/ingest/rtsp_client.py ReaderAudioPacket).
            packet = raw if isinstance(raw, av.Packet) else raw.packet()
            for frame in self._decoder.decode(packet):
                frame.pts = None
                for chunk in self._resampler.resample(frame):
                    chunk.pts = None
                    for pkt in self._encoder.encode(chunk):
                        out.append(self._stamp(pkt))
        except av.error.FFmpegError as exc:
            log.warning("%s: undecodable %s audio packet skipped: %s", self.camera_id, self.source_codec, exc)
        return out

    def _stamp(self, pkt: Any) -> tuple[bytes, int | None, int]:
        # Consecutive AAC frames: each one AAC_FRAME samples after the previous.
        pts = self._next_pts
        if self._next_pts is not None:
            self._next_pts += AAC_FRAME
        return bytes(pkt), pts, AAC_FRAME
