"""camhub's simulated doorbell camera firmware: picture, encoder, RTSP server, WHIP, events, faults.

Public API::

    from firmware_sim import SimCamera, SimFleet       # cameras (library use)
    from firmware_sim import stamp                      # stamp.decode(bgr) -> Stamp | None (pixels)
    from firmware_sim.h264 import find_stamp            # find_stamp(packet) -> SeiStamp | None (SEI)

Module map: ``picture`` draws frames, ``encoder`` encodes clips once, ``feed`` fans access units
out to viewers, ``camera`` runs the frame clock/events/faults, ``rtsp`` + ``rtp`` serve RTSP,
``control`` is the HTTP control API and SSE, ``whip`` publishes over WebRTC, ``mdns`` advertises,
``fleet`` groups cameras, ``cli`` is ``camhub-sim``.
"""

from firmware_sim.camera import FAULT_KINDS, CameraEvent, FaultError, SimCamera
from firmware_sim.fleet import SimFleet
from firmware_sim.h264 import SeiStamp, find_stamp
from firmware_sim.stamp import Stamp

__all__ = [
    "FAULT_KINDS",
    "CameraEvent",
    "FaultError",
    "SeiStamp",
    "SimCamera",
    "SimFleet",
    "Stamp",
    "find_stamp",
]
