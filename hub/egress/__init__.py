"""Live media leaving the hub: WebRTC relay of camera packets (no re-encoding), sessions that can be cut.

`webrtc.py` (the track, `LiveSession`, `LiveSessions`), `ice.py` (which addresses ICE may offer, no
STUN/TURN), `whep_client.py` (a WHEP viewer for tests, the benchmark and agency tooling). Who may
watch is decided by the routes in `hub/api/live.py`.
"""
