"""An H.264 copy of one H.265 segment, for the owner's player in a browser that cannot play H.265.

Recording and deliveries stay stream copies of what the camera sent (segmenter.py, clip.py); this is
only for watching on the LAN. `H264Copies` makes one copy at a time (a doorbell hub has two small
cores and the recorder comes first: libx264 `ultrafast`, one thread, so a 4 s 1080p segment costs
about one core-second) and keeps the last few, so a player seeking within what it is watching, or
playing it again, does not pay twice; the audio track, if any, is copied as it is.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import av

log = logging.getLogger(__name__)

CACHED_COPIES = 8  # ~ the half minute around what is being watched, at 4 s segments


def to_h264(source: str | io.BytesIO) -> bytes:
    """Decode the video of `source` and encode it as H.264 (blocking: run it in a thread)."""
    out_buf = io.BytesIO()
    with av.open(source) as inp:
        vin = inp.streams.video[0]
        vin.codec_context.thread_count = 1
        ain = inp.streams.audio[0] if inp.streams.audio else None
        # Fragmented, as the recording is: written to memory in one pass (faststart needs a second).
        with av.open(
            out_buf, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}
        ) as out:
            vout: Any = out.add_stream(
                "libx264", options={"preset": "ultrafast", "tune": "zerolatency", "threads": "1"}
            )
            vout.width, vout.height, vout.pix_fmt = (
                vin.codec_context.width,
                vin.codec_context.height,
                "yuv420p",
            )
            vout.time_base = vin.time_base
            aout = out.add_stream_from_template(ain) if ain is not None else None
            streams = [vin] if ain is None else [vin, ain]
            for pkt in inp.demux(*streams):
                if pkt.stream is vin:
                    for frame in pkt.decode():
                        frame.pict_type = av.video.frame.PictureType.NONE
                        for packet in vout.encode(frame):
                            out.mux(packet)
                elif aout is not None and pkt.size:
                    pkt.stream = aout
                    out.mux(pkt)
            for packet in vout.encode():
                out.mux(packet)
    return out_buf.getvalue()


class H264Copies:
    """One transcode at a time, the last `CACHED_COPIES` kept in memory by segment id."""

    def __init__(self, cached: int = CACHED_COPIES) -> None:
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cached = cached
        self._one_at_a_time = asyncio.Lock()

    async def get(self, segment_id: int, source: Callable[[], str | io.BytesIO]) -> bytes:
        """The H.264 copy of a segment; `source` (blocking) gives what to decode."""
        if (data := self._cache.get(segment_id)) is not None:
            self._cache.move_to_end(segment_id)
            return data
        async with self._one_at_a_time:
            if (data := self._cache.get(segment_id)) is None:
                data = await asyncio.to_thread(lambda: to_h264(source()))
                log.info(
                    "H.264 copy of segment %d for a browser without H.265 (%d bytes)", segment_id, len(data)
                )
            self._cache[segment_id] = data
            self._cache.move_to_end(segment_id)
            while len(self._cache) > self._cached:
                self._cache.popitem(last=False)
            return data
