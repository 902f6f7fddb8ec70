"""The floor of any recorder built on PyAV: RTSP in, 4 s fragmented-MP4 segments out, nothing else.

`bench/daemon_bench.py` runs one of these per camera beside the daemon and `ffmpeg -c copy -f
segment`, on the same streams and in the same windows. What it does is what every PyAV recorder
must do: `container.demux()` a packet at a time (a Python object per packet) and `mux()` it into an
output opened per segment at a keyframe. What it leaves out is all camhub adds: Annex B
normalisation and timestamp repair, wall-clock stamping of every frame, sub-GOP fragments for the
crash budget, fsync, SHA-256 and the index, the web server and the consent service. So

    daemon / ffmpeg = (pyav floor / ffmpeg) x (daemon / pyav floor)

splits the daemon's ratio into what the library costs over ffmpeg's own loop and what camhub adds
on top. FFmpeg does the same kind of work on both sides, though not the same version: the reference
is the system's `ffmpeg` (Debian's 5.1 here), PyAV carries its own (8.1 in PyAV 18.1).

Run: ``python -m bench.pyav_floor RTSP_URL OUT_DIR`` (until SIGINT or SIGTERM).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import av

SEGMENT_S = 4.0
FMP4 = "frag_keyframe+empty_moov+default_base_moof"


class StopFlag:
    """Set by SIGINT or SIGTERM; a recording loop checks it between packets and closes its segment."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, *_: Any) -> None:
        self.set = True


def record(url: str, out_dir: Path) -> int:
    stop = StopFlag()
    out_dir.mkdir(parents=True, exist_ok=True)
    src = av.open(url, options={"rtsp_transport": "tcp", "max_delay": "500000"})
    video = src.streams.video[0]
    cut_after = round(SEGMENT_S / video.time_base)
    out: Any = None
    ostream: Any = None
    start = 0
    n = 0
    try:
        for pkt in src.demux(video):
            if stop.set:
                break
            if pkt.dts is None or pkt.pts is None or pkt.size == 0:
                continue  # the demuxer's flush packet, and the first packet of a connection
            if pkt.is_keyframe and (out is None or pkt.pts - start >= cut_after):
                if out is not None:
                    out.close()
                out = av.open(str(out_dir / f"{n:05d}.mp4"), "w", format="mp4", options={"movflags": FMP4})
                ostream = out.add_stream_from_template(video)
                start, n = pkt.dts, n + 1
            if out is None:
                continue  # waiting for the first keyframe
            pkt.pts -= start
            pkt.dts -= start
            pkt.stream = ostream
            out.mux(pkt)
    finally:
        if out is not None:
            out.close()
        src.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    sys.exit(record(sys.argv[1], Path(sys.argv[2])))
