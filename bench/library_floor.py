"""Is the PyAV floor the FFmpeg version or the Python per packet? Four readers of one camera, side by side.

daemon_bench splits the daemon's ratio as (PyAV floor / ffmpeg) x (daemon / floor). The floor part
could come from either of two things the reference does not share with PyAV: Python running per
packet, or the library itself (the reference is the system's `ffmpeg`, Debian's 5.1; PyAV carries
its own FFmpeg, 8.1 in PyAV 18.1). This reads the same 1080p15 2 Mbit/s camera four ways at once:

- ``c_pyav_ffmpeg``: bench/native/demux_loop.c, `av_read_frame` in a C loop, linked against PyAV's
  bundled libavformat;
- ``c_system_ffmpeg``: the same source linked against the system's libavformat;
- ``pyav_demux``: ``container.demux()`` in Python over PyAV (what the hub's reader thread starts
  from: a Packet object per packet);
- ``ffmpeg_null``: ``ffmpeg -rtsp_transport tcp -i URL -c copy -f null -`` (the CLI's demux, no mux).

C on one library against C on the other isolates the FFmpeg version; C against PyAV on the same
library isolates the interpreter. Demux only: the mux side of a recorder is not measured here.

Diagnostic, not a `make bench` scenario: it compiles C, so it needs `gcc`.
Run: ``.venv/bin/python -m bench.library_floor [--windows N] [--seconds S]``; prints a table and
writes ``bench/results/library_floor.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes.util
import glob
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import av

from bench import results_dir
from bench.record_bench import CAMERA_KBIT, cpu_seconds, start_sim, stop_process

SOURCE = Path(__file__).resolve().parent / "native" / "demux_loop.c"
LIBS = ("avformat", "avcodec", "avutil")
PYAV_DEMUX = """
import signal, sys, av
stop = False
def _stop(*_):
    global stop
    stop = True
signal.signal(signal.SIGINT, _stop)
signal.signal(signal.SIGTERM, _stop)
src = av.open(sys.argv[1], options={"rtsp_transport": "tcp", "max_delay": "500000"})
n = 0
for pkt in src.demux():
    if stop:
        break
    n += 1
print(n, "packets", file=sys.stderr)
"""


def _pyav_libs() -> list[str]:
    """PyAV's bundled FFmpeg (auditwheel names them libavformat-<hash>.so.<version> in av.libs)."""
    where = Path(av.__file__).resolve().parent.parent / "av.libs"
    found = [sorted(glob.glob(str(where / f"lib{name}-*.so*"))) for name in LIBS]
    if not all(found):
        raise RuntimeError(f"PyAV's bundled FFmpeg libraries not found in {where}")
    return [f[0] for f in found]


def _system_libs() -> list[str]:
    """The system's FFmpeg by soname (`-l:libavformat.so.59`): the runtime package, no -dev needed."""
    found = [ctypes.util.find_library(name) for name in LIBS]
    if not all(found):
        raise RuntimeError(
            "the system's FFmpeg libraries (libavformat, libavcodec, libavutil) are not installed"
        )
    return [f"-l:{soname}" for soname in found if soname]


def build(out_dir: Path) -> dict[str, Path]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("needs gcc (or cc) to build bench/native/demux_loop.c")
    built = {}
    for name, libs in (("c_pyav_ffmpeg", _pyav_libs()), ("c_system_ffmpeg", _system_libs())):
        exe = out_dir / name
        rpath = sorted({str(Path(p).parent) for p in libs if not p.startswith("-l")})
        cmd = [gcc, "-O2", "-o", str(exe), str(SOURCE), *libs, *(f"-Wl,-rpath,{d}" for d in rpath)]
        subprocess.run(cmd, check=True)
        built[name] = exe
    return built


async def drive(windows: int, window_s: float, warmup_s: float) -> dict[str, Any]:
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("ffmpeg not found")
    with tempfile.TemporaryDirectory(prefix="camhub-library-floor-") as tmp:
        exes = build(Path(tmp))
        script = Path(tmp) / "pyav_demux.py"
        script.write_text(PYAV_DEMUX)
        sim, cameras = await start_sim(1, CAMERA_KBIT)
        url = str(cameras[0]["rtsp_main"])
        quiet = {"stdin": asyncio.subprocess.DEVNULL, "stdout": asyncio.subprocess.DEVNULL}
        procs: dict[str, asyncio.subprocess.Process] = {}
        try:
            for name, exe in exes.items():
                procs[name] = await asyncio.create_subprocess_exec(str(exe), url, **quiet)
            procs["pyav_demux"] = await asyncio.create_subprocess_exec(
                sys.executable, str(script), url, **quiet
            )
            procs["ffmpeg_null"] = await asyncio.create_subprocess_exec(
                "ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
                "-c", "copy", "-f", "null", "-", **quiet,
            )  # fmt: skip
            await asyncio.sleep(warmup_s)
            per_window: dict[str, list[float]] = {k: [] for k in procs}
            for _ in range(windows):
                cpu0 = {k: cpu_seconds(p.pid) for k, p in procs.items()}
                t0 = asyncio.get_running_loop().time()
                await asyncio.sleep(window_s)
                dt = asyncio.get_running_loop().time() - t0
                for k, p in procs.items():
                    if p.returncode is not None:
                        raise RuntimeError(f"{k} exited with {p.returncode} during the run")
                    per_window[k].append((cpu_seconds(p.pid) - cpu0[k]) / dt * 1000)
        finally:
            for p in procs.values():
                await stop_process(p, signal.SIGINT)
            await stop_process(sim)
    ref = per_window["ffmpeg_null"]
    rows = {
        k: {
            "cpu_ms_per_s": round(statistics.median(v), 2),
            "windows_ms_per_s": [round(x, 2) for x in v],
            "ratio_to_ffmpeg_null": round(statistics.median(a / b for a, b in zip(v, ref, strict=True)), 2),
        }
        for k, v in per_window.items()
    }
    c_pyav = per_window["c_pyav_ffmpeg"]
    return {
        "what": f"one sim camera 1080p15 CBR {CAMERA_KBIT} kbit/s over RTSP/TCP, demux only, four readers at once",
        "ffmpeg": {"pyav_bundled": av.library_versions.get("libavformat"), "system": _system_version()},
        "readers": rows,
        "pyav_over_c_same_library": round(
            statistics.median(a / b for a, b in zip(per_window["pyav_demux"], c_pyav, strict=True)), 2
        ),
        "c_pyav_library_over_c_system_library": round(
            statistics.median(a / b for a, b in zip(c_pyav, per_window["c_system_ffmpeg"], strict=True)), 2
        ),
    }


def _system_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    return out.split("\n", 1)[0]


def table(result: dict[str, Any]) -> str:
    rows = ["reader | CPU ms/s (median) | windows | / ffmpeg -f null", "--- | ---: | --- | ---:"]
    for name, r in result["readers"].items():
        windows = ", ".join(str(x) for x in r["windows_ms_per_s"])
        rows.append(f"{name} | {r['cpu_ms_per_s']} | {windows} | x{r['ratio_to_ffmpeg_null']}")
    rows.append("")
    rows.append(
        f"PyAV demux / C loop, same library: x{result['pyav_over_c_same_library']}; "
        f"C loop on PyAV's FFmpeg / on the system's: x{result['c_pyav_library_over_c_system_library']}"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.library_floor", description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--seconds", type=float, default=15.0, help="length of each window")
    args = p.parse_args(argv)
    try:
        result = asyncio.run(drive(args.windows, args.seconds, warmup_s=5.0))
    except RuntimeError as exc:
        print(f"library_floor: {exc}", file=sys.stderr)
        return 1
    print(table(result))
    out = results_dir() / "library_floor.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
