"""Connect to a camera's ONVIF device service and read what the hub needs from it.

`connect()` builds an `onvif.ONVIFCamera` for `http://host:port` (the camera's `onvif` setting),
with the credentials as a WS-UsernameToken PasswordDigest (ONVIF Core §5.9.4; never the plain
password on the wire) and reads the service addresses (GetServices, else GetCapabilities).
`read_streams()` reads GetDeviceInformation, GetProfiles and GetStreamUri (ONVIF Media §5.15):
the first profile is the main stream (ONVIF Media §5.2: profiles in the device's order of
preference), the smallest other one the sub-stream.

Errors are `OnvifError` with a stable code (`onvif_unreachable`, `onvif_unauthorized`,
`onvif_bad_answer`), their text free of credentials (hub/redact.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import onvif.settings
import zeep.exceptions
from onvif import ONVIFCamera, ONVIFError

from hub import redact
from hub.errors import HubError

log = logging.getLogger(__name__)

# onvif-zeep-async turns on lxml's huge_tree (no depth or text-size limits) for every parse; a
# camera is untrusted input, so the hub restores lxml's defaults (zeep keeps entities unresolved).
onvif.settings.DEFAULT_SETTINGS.xml_huge_tree = False
CALL_TIMEOUT_S = 15.0
# ONVIF answers are kilobytes (a camera with many profiles, tens of KiB); the library reads whatever
# comes. One answer over this is refused while it is read, before zeep sees it.
MAX_ANSWER_BYTES = 1024 * 1024


class AnswerTooLarge(aiohttp.ClientPayloadError):
    """A camera's SOAP answer was larger than MAX_ANSWER_BYTES."""


class BoundedResponse(aiohttp.ClientResponse):
    """An aiohttp response whose `read()` stops at MAX_ANSWER_BYTES (the library calls `read()`)."""

    async def read(self) -> bytes:
        if self._body is None:
            if self.content_length is not None and self.content_length > MAX_ANSWER_BYTES:
                self.close()
                raise AnswerTooLarge(f"answer of {self.content_length} bytes (at most {MAX_ANSWER_BYTES})")
            body = bytearray()
            try:
                async for chunk in self.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise AnswerTooLarge(f"answer over {MAX_ANSWER_BYTES} bytes")
            except BaseException:
                self.close()
                raise
            self._body = bytes(body)
        return await super().read()


class BoundedOnvifCamera(ONVIFCamera):
    """`ONVIFCamera` whose every service reads answers through `BoundedResponse`.

    Each service owns an aiohttp session the library makes (`ONVIFService._session`); its response
    class is swapped here. Private attributes of onvif-zeep-async and aiohttp: if either goes away
    this raises at once (and tests/onvif/test_onvif_hub.py::test_an_oversized_answer_is_refused fails),
    rather than silently reading unbounded answers again.
    """

    async def create_onvif_service(
        self,
        name: str,
        port_type: str | None = None,
        read_timeout: int | None = None,
        write_timeout: int | None = None,
    ) -> Any:
        service = await super().create_onvif_service(name, port_type, read_timeout, write_timeout)
        session = service._session
        if not isinstance(session, aiohttp.ClientSession) or not hasattr(session, "_response_class"):
            raise RuntimeError("onvif-zeep-async changed: cannot bound the size of camera answers")
        session._response_class = BoundedResponse
        return service


class OnvifError(HubError):
    """The camera's ONVIF service could not be used; `code` says why."""

    code = "onvif_unreachable"
    status = 502


@dataclass(frozen=True)
class OnvifStreams:
    """What adding an ONVIF camera stores: its stream URIs (without credentials) and who it is."""

    main_url: str
    sub_url: str | None
    manufacturer: str | None
    model: str | None
    serial: str | None


def split_url(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None:
        raise OnvifError(f"not an ONVIF URL: {url}", code="bad_setting", status=400)
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def onvif_error(exc: BaseException, url: str) -> OnvifError:
    """A library or network error as an `OnvifError`, its text redacted."""
    text = redact.redact(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, AnswerTooLarge) or isinstance(exc.__cause__, AnswerTooLarge):
        return OnvifError(f"{url}: {text}", code="onvif_bad_answer")
    if isinstance(exc, zeep.exceptions.Fault):
        lowered = f"{exc.message} {exc.subcodes}".lower()
        if "notauthorized" in lowered or "not authorized" in lowered or "authori" in lowered:
            return OnvifError(f"{url}: the camera refused the credentials", code="onvif_unauthorized")
        return OnvifError(f"{url}: SOAP fault: {text}", code="onvif_bad_answer")
    if isinstance(exc, (zeep.exceptions.Error, AttributeError, TypeError, ValueError, KeyError, IndexError)):
        return OnvifError(f"{url}: unexpected answer: {text}", code="onvif_bad_answer")
    if isinstance(exc, ONVIFError) and "NotAuthorized" in str(exc):
        return OnvifError(f"{url}: the camera refused the credentials", code="onvif_unauthorized")
    return OnvifError(f"{url}: {text}", code="onvif_unreachable")


CALL_ERRORS: tuple[type[BaseException], ...] = (
    ONVIFError,
    zeep.exceptions.Error,
    aiohttp.ClientError,
    TimeoutError,
    OSError,
    AttributeError,
    TypeError,
    ValueError,
    KeyError,
    IndexError,
)


async def connect(url: str, username: str | None, password: str | None) -> ONVIFCamera:
    """An `ONVIFCamera` whose service addresses are known. The caller closes it (`await cam.close()`)."""
    host, port = split_url(url)
    camera = BoundedOnvifCamera(host, port, username, password, adjust_time=True)
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            await camera.update_xaddrs()
    except CALL_ERRORS as exc:
        await camera.close()
        raise onvif_error(exc, url) from None
    except BaseException:
        await camera.close()
        raise
    return camera


def _pixels(profile: Any) -> int:
    try:
        res = profile.VideoEncoderConfiguration.Resolution
        return int(res.Width) * int(res.Height)
    except (AttributeError, TypeError, ValueError):
        return 0


async def read_streams(url: str, username: str | None, password: str | None) -> OnvifStreams:
    """The camera's main and sub stream URIs (GetProfiles, GetStreamUri) and its identity."""
    camera = await connect(url, username, password)
    try:
        async with asyncio.timeout(CALL_TIMEOUT_S):
            devicemgmt = await camera.create_devicemgmt_service()
            info = await devicemgmt.GetDeviceInformation()
            media = await camera.create_media_service()
            profiles = list(await media.GetProfiles() or [])
            if not profiles:
                raise OnvifError(f"{url}: the camera has no media profile", code="onvif_bad_answer")
            main = profiles[0]
            others = sorted(profiles[1:], key=_pixels)
            sub = others[0] if others else None
            uris = []
            for profile in (main, sub):
                if profile is None:
                    uris.append(None)
                    continue
                answer = await media.GetStreamUri(
                    {
                        "StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}},
                        "ProfileToken": profile.token,
                    }
                )
                uris.append(str(answer.Uri))
    except OnvifError:
        raise
    except CALL_ERRORS as exc:
        raise onvif_error(exc, url) from None
    finally:
        await camera.close()
    main_url = uris[0]
    if not main_url or not main_url.startswith("rtsp://"):
        raise OnvifError(f"{url}: the main stream is not an rtsp:// URI", code="onvif_bad_answer")
    sub_url = uris[1] if uris[1] and uris[1].startswith("rtsp://") else None
    return OnvifStreams(
        main_url=_without_userinfo(main_url),
        sub_url=_without_userinfo(sub_url) if sub_url else None,
        manufacturer=_text(getattr(info, "Manufacturer", None)),
        model=_text(getattr(info, "Model", None)),
        serial=_text(getattr(info, "SerialNumber", None)),
    )


def _without_userinfo(url: str) -> str:
    # Some cameras put their credentials in the URI they return: the hub stores them separately.
    return redact.redact(url) if "@" in url.split("/", 3)[2] else url


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:200]
