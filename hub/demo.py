"""`camhub demo`: the hub plus simulated cameras on 127.0.0.1, for trying camhub without hardware.

The config is generated, not read: data in `--data-dir` (kept between runs, so footage survives a
restart), the clock trusted (a dev machine keeps time; PROTOCOL.md §6), discovery on loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from firmware_sim.fleet import SimFleet
from hub import config as config_mod
from hub import daemon
from hub.systemd import Notifier

log = logging.getLogger(__name__)

# The simulator's frame stamp (top) and clock overlay (bottom) change every frame; an owner would mask
# them, as the demo does, so that only the visitor counts as motion.
SIM_OVERLAY_MASKS = [
    [[0.0, 0.0], [1.0, 0.0], [1.0, 0.08], [0.0, 0.08]],
    [[0.0, 0.88], [1.0, 0.88], [1.0, 1.0], [0.0, 1.0]],
]


def demo_config(data_dir: Path, port: int, camera_urls: dict[str, tuple[str, str, str]]) -> config_mod.Config:
    """Config for the demo hub; `camera_urls` maps camera id to (main URL, sub URL, events URL)."""
    cameras = [
        {
            "id": cam_id,
            "name": f"Simulated doorbell {cam_id}",
            "url": main,
            "sub_url": sub,
            "events_url": events,
            "motion": {"masks": SIM_OVERLAY_MASKS},
        }
        for cam_id, (main, sub, events) in camera_urls.items()
    ]
    return config_mod.parse(
        {
            "hub": {
                "name": "camhub-demo",
                "data_dir": str(data_dir),
                "bind": "127.0.0.1",
                "port": port,
            },
            "consent": {"trust_system_clock": True},
            "discovery": {"interfaces": ["127.0.0.1"]},
            "cameras": cameras,
        }
    )


async def run(data_dir: Path, port: int, cameras: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # As `camhub run` (daemon.serve): SIGUSR1 logs the `camhub stats` line instead of killing the demo.
    loop.add_signal_handler(signal.SIGUSR1, daemon.log_resource_stats)
    try:
        async with contextlib.AsyncExitStack() as stack:
            urls: dict[str, tuple[str, str, str]] = {}
            if cameras:
                # 720p keeps the one-time loop encode short; encoded loops are cached in the data dir,
                # so a restarted demo is up in a second.
                fleet = SimFleet(cameras, width=1280, height=720, mdns=True, cache_dir=data_dir / "sim-cache")
                log.info("starting %d simulated cameras (first start encodes their video once)", cameras)
                await stack.enter_async_context(fleet)
                for cam in fleet.cameras:
                    urls[cam.name] = (cam.rtsp_url("main"), cam.rtsp_url("sub"), cam.events_url)
                    log.info(
                        "simulated camera %s: %s (control %s)",
                        cam.name,
                        cam.rtsp_url("main"),
                        cam.control_url,
                    )
            cfg = demo_config(data_dir, port, urls)
            services = await stack.enter_async_context(daemon.running_hub(cfg, Notifier()))
            print(f"camhub demo: open {services.base_url}/  (hub id {services.hub_key.hub_id})", flush=True)
            await stop.wait()
    except daemon.StartupError as exc:
        log.error("cannot start: %s", exc)
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            loop.remove_signal_handler(sig)
    return 0
