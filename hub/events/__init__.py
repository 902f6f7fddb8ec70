"""Events: motion detected on a camera's stream and doorbell presses from its event stream.

- `motion.py`: detector, hysteresis and the decode thread (OpenCV, PyAV).
- `doorbell.py`: Server-Sent Events client for presses.
- `thumbnails.py`: durable JPEG per event.
- `service.py`: `EventRecorder`, one per camera, which the daemon starts and stops.
Rows live in the `events` table (`hub/store/events.py`).
"""

from hub.events.motion import MotionConfig
from hub.events.service import EventRecorder

__all__ = ["EventRecorder", "MotionConfig"]
