"""Publish a camera stream to a WHIP endpoint (RFC 9725) with aiortc, without re-encoding.

The track hands aiortc ``av.Packet`` objects (Annex-B access units with the SEI stamp), which
aiortc only packetizes (RFC 6184) — see MEDIA_NOTES. Consequently PLI/FIR keyframe requests
are not honoured: a receiver waits for the next IDR (at most one GOP). The publisher starts
at the next IDR rather than replaying the cached GOP, so timing stays real-time.

Flow (RFC 9725 §4.2): POST the SDP offer (``Content-Type: application/sdp``, ``Authorization:
Bearer <token>`` when given) → ``201 Created`` with the answer and a ``Location`` header
naming the session resource → ``DELETE`` that resource to stop. ICE uses no STUN/TURN
servers (``iceServers=[]``); candidates are gathered after the offer is complete (no trickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any
from urllib.parse import urljoin

import aiohttp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from firmware_sim import h264
from firmware_sim.feed import Feed, Subscriber

log = logging.getLogger(__name__)
TIME_BASE = Fraction(1, 90_000)


class WhipError(Exception):
    code = "whip_failed"


class PacketTrack(MediaStreamTrack):
    """A video track whose ``recv()`` returns encoded H.264 packets from a camera feed."""

    kind = "video"

    def __init__(self, feed: Feed) -> None:
        super().__init__()
        self._sub: Subscriber = feed.subscribe(60, from_cache=False)

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        au = await self._sub.queue.get()
        if au is None:
            self.stop()
            raise MediaStreamError
        packet = av.Packet(h264.join_annexb(au.nals))
        packet.pts = packet.dts = au.pts90
        packet.time_base = TIME_BASE
        return packet

    def stop(self) -> None:
        self._sub.close()
        super().stop()


class WhipPublisher:
    """One WHIP session pushing one camera stream."""

    def __init__(
        self, feed: Feed, url: str, token: str | None = None, on_stop: Callable[[Any], None] | None = None
    ) -> None:
        self.feed = feed
        self.url = url
        self.token = token
        self.resource_url: str | None = None
        self.pc: RTCPeerConnection | None = None
        self._on_stop = on_stop
        self._stopped = False

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def start(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        track = PacketTrack(self.feed)
        try:
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            # Nothing checks that our packets match the negotiated codec: force H.264.
            codecs = [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() in ("video/h264", "video/rtx")
            ]
            transceiver.setCodecPreferences(codecs)
            await self.pc.setLocalDescription(await self.pc.createOffer())
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    self.url,
                    data=self.pc.localDescription.sdp,
                    headers=self._headers("application/sdp"),
                ) as resp,
            ):
                answer = await resp.text()
                if resp.status != 201:
                    raise WhipError(f"WHIP endpoint answered {resp.status}: {answer[:200]}")
                location = resp.headers.get("Location")
                if not location:
                    raise WhipError("WHIP answer without Location header (RFC 9725 §4.2)")
                self.resource_url = urljoin(str(resp.url), location)
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except (aiohttp.ClientError, ValueError, WhipError) as exc:
            track.stop()
            await self.pc.close()
            raise exc if isinstance(exc, WhipError) else WhipError(str(exc)) from exc

    async def stop(self) -> None:
        """DELETE the WHIP resource and close the peer connection; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.resource_url:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
                    http.delete(self.resource_url, headers=self._headers()),
                ):
                    pass
        if self.pc is not None:
            await self.pc.close()
        if self._on_stop is not None:
            self._on_stop(self)
