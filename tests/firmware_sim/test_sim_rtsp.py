"""The RTSP server against independent clients: Debian ffprobe, PyAV (FFmpeg 8) and a raw client."""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import re
import struct

import pytest

from firmware_sim import h264
from firmware_sim.camera import SimCamera

from .sim_client import RawRtsp, ffprobe, read_frames


async def test_ffprobe_sees_h264_with_configured_size_and_rate(camera: SimCamera, ffprobe_bin: str) -> None:
    rc, data, err = await ffprobe(camera.rtsp_url("main"))
    assert rc == 0, err
    [stream] = data["streams"]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 640, 360)
    assert stream["r_frame_rate"] == "15/1"
    rc, data, err = await ffprobe(camera.rtsp_url("sub"))
    assert rc == 0, err
    assert (data["streams"][0]["width"], data["streams"][0]["height"]) == (320, 180)


async def test_defaults_are_1080p15(ffprobe_bin: str) -> None:
    async with SimCamera() as cam:
        assert cam.rtsp_url() == f"rtsp://admin:camhub@127.0.0.1:{cam.rtsp.port}/sim-1/main"
        rc, data, err = await ffprobe(cam.rtsp_url("main"))
        assert rc == 0, err
        [stream] = data["streams"]
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 1920, 1080)
        assert stream["r_frame_rate"] == "15/1"
        rc, data, err = await ffprobe(cam.rtsp_url("sub"))
        assert (data["streams"][0]["width"], data["streams"][0]["height"]) == (640, 360), err


async def test_pyav_decodes_3s_with_consecutive_stamps(camera: SimCamera) -> None:
    frames, errors = await asyncio.to_thread(read_frames, camera.rtsp_url("main"), 50)
    assert errors == 0 and len(frames) >= 45  # ≥ 3 s at 15 fps
    seqs = [f.seq for f in frames]
    assert None not in seqs
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "SEI counter has gaps or repeats"
    pixels = [f.pixel for f in frames]
    assert None not in pixels
    # Within the replayed loop the pixel frame number advances by one (mod the loop length).
    for a, b in itertools.pairwise(pixels):
        assert b.frame == (a.frame + 1) % camera.loop_frames or (b.clip != a.clip and b.frame == 0)
    times = [f.capture_us for f in frames]
    assert all(0 < b - a < 1_000_000 for a, b in itertools.pairwise(times))


async def test_sub_stream_stamps_match_main(camera: SimCamera) -> None:
    frames, errors = await asyncio.to_thread(read_frames, camera.rtsp_url("sub"), 20)
    assert errors == 0 and all(f.pixel is not None and f.width == 320 for f in frames)


async def test_describe_sdp_and_rtp_on_the_wire(camera: SimCamera) -> None:
    client = await RawRtsp.connect(camera.rtsp_url())
    try:
        url = camera.rtsp_url(with_credentials=False)
        resp = await client.request("OPTIONS", url, auth=False)
        assert resp.status == 200 and "GET_PARAMETER" in resp.headers["public"]
        resp = await client.request("DESCRIBE", url)
        assert resp.status == 200 and resp.headers["content-type"] == "application/sdp"
        sdp = resp.body.decode()
        assert "a=rtpmap:96 H264/90000" in sdp and "packetization-mode=1" in sdp and "a=framerate:15" in sdp
        sprop = sdp.split("sprop-parameter-sets=")[1].split()[0]
        sps, pps = (base64.b64decode(p) for p in sprop.split(","))
        assert h264.nal_type(sps) == h264.NAL_SPS and h264.nal_type(pps) == h264.NAL_PPS
        resp = await client.request(
            "SETUP", url + "/trackID=0", {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        )
        assert resp.status == 200 and "interleaved=0-1" in resp.headers["transport"]
        assert "timeout=" in resp.headers["session"]
        resp = await client.request("PLAY", url)
        assert resp.status == 200 and "rtptime=" in resp.headers["rtp-info"]
        rtptime = int(resp.headers["rtp-info"].split("rtptime=")[1])
        units = await client.read_access_units(20)
        assert units[0][0] == rtptime
        assert h264.nal_type(units[0][1][0]) == h264.NAL_SPS  # starts at an IDR with its parameter sets
        assert all(b[0] - a[0] == 6000 for a, b in itertools.pairwise(units))  # 90 kHz / 15 fps
        seqs = [h264.find_stamp(h264.join_annexb(nals)).seq for _, nals in units]
        assert seqs == list(range(seqs[0], seqs[0] + 20))
        resp = await client.request("GET_PARAMETER", url)
        assert resp.status == 200
        # An RTCP sender report (RFC 3550 §6.4.1) arrives on the odd channel.
        sr = None
        while sr is None:
            channel, packet = await client.read_interleaved()
            if channel == 1:
                sr = packet
        assert sr[1] == 200 and struct.unpack(">I", sr[4:8])[0] == int(client.ssrc or "", 16)
        resp = await client.request("TEARDOWN", url)
        assert resp.status == 200
    finally:
        await client.close()


async def test_wrong_password_gets_401_and_ffprobe_fails_cleanly(camera: SimCamera, ffprobe_bin: str) -> None:
    client = await RawRtsp.connect(camera.rtsp_url(), password="wrong")
    try:
        resp = await client.request("DESCRIBE", camera.rtsp_url(with_credentials=False))
        assert resp.status == 401 and resp.headers["www-authenticate"].startswith("Digest ")
        resp = await client.request("DESCRIBE", camera.rtsp_url(with_credentials=False))
        assert resp.status == 401
    finally:
        await client.close()
    bad = camera.rtsp_url().replace("admin:camhub@", "admin:nope@")
    rc, data, err = await ffprobe(bad)
    assert rc != 0 and "401" in err and not data.get("streams")


async def test_garbage_gets_400_and_other_clients_keep_streaming(camera: SimCamera) -> None:
    viewer = await RawRtsp.connect(camera.rtsp_url())
    try:
        await viewer.play(camera.rtsp_url(with_credentials=False))
        before = await viewer.read_access_units(3)
        for garbage in (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n",
            b"HELLO\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"X" * 20000 + b"\r\n",
            # "²" passes str.isdigit() but not int(): a Content-Length the parser must refuse.
            "OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nContent-Length: ²\r\n\r\n".encode(),
        ):
            attacker = await RawRtsp.connect(camera.rtsp_url())
            try:
                await attacker.send_raw(garbage)
                resp = await attacker.read_response()
                assert resp.status == 400
                assert await attacker.reader.read() == b""  # the server closed that connection
            finally:
                await attacker.close()
        after = await viewer.read_access_units(20)
        seqs = [h264.find_stamp(h264.join_annexb(n)).seq for _, n in before + after]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        await viewer.close()


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("DESCRIBE", "/sim-9/main", {}, 404),
        ("DESCRIBE", "/sim-1/thermal", {}, 404),
        ("PLAY", "/sim-1/main", {}, 454),
        ("PLAY", "/sim-1/main", {"Session": "DEADBEEF"}, 454),
        ("SETUP", "/sim-1/main/trackID=0", {"Transport": "RTP/AVP;multicast;port=5000-5001"}, 461),
        ("SETUP", "/sim-1/main/trackID=0", {"Transport": "RTP/SAVP;unicast;client_port=5000-5001"}, 461),
        ("SETUP", "/sim-1/main/trackID=0", {"Transport": "RTP/AVP;unicast"}, 461),
        ("SETUP", "/sim-1/main/trackID=0", {}, 400),
        ("RECORD", "/sim-1/main", {}, 405),
        ("ANNOUNCE", "/sim-1/main", {}, 405),
        ("FROBNICATE", "/sim-1/main", {}, 501),
        ("DESCRIBE", "/sim-1/main", {"Require": "com.example.x"}, 551),
    ],
)
async def test_bad_requests_get_rtsp_status_codes(
    camera: SimCamera, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    client = await RawRtsp.connect(camera.rtsp_url())
    try:
        base = camera.rtsp_url(with_credentials=False).rsplit("/sim-1/main", 1)[0]
        resp = await client.request("OPTIONS", "*", auth=False)
        assert resp.status == 200
        resp = await client.request(method, base + path, headers)
        assert resp.status == status
        # The connection survives a well-formed bad request.
        assert (await client.request("OPTIONS", "*")).status == 200
    finally:
        await client.close()


async def test_session_state_errors(camera: SimCamera) -> None:
    client = await RawRtsp.connect(camera.rtsp_url())
    try:
        url = camera.rtsp_url(with_credentials=False)
        assert (await client.request("DESCRIBE", url)).status == 200
        tcp = {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
        assert (await client.request("SETUP", url + "/trackID=0", tcp)).status == 200
        assert (await client.request("PAUSE", url)).status == 455  # not playing yet
        sub = url.replace("/main", "/sub")
        assert (
            await client.request("SETUP", sub + "/trackID=0", tcp)
        ).status == 459  # other stream, same session
        assert (await client.request("PLAY", url)).status == 200
        assert (await client.request("PAUSE", url)).status == 200
        # Missing CSeq → 400 (RFC 2326 §12.17), version 2.0 → 505.
        await client.send_raw(b"OPTIONS * RTSP/1.0\r\n\r\n")
        assert (await client.read_response()).status == 400
        await client.send_raw(b"OPTIONS * RTSP/2.0\r\nCSeq: 99\r\n\r\n")
        assert (await client.read_response()).status == 505
    finally:
        await client.close()


async def test_several_clients_at_once_and_slow_client_does_not_block(camera: SimCamera) -> None:
    slow = await RawRtsp.connect(camera.rtsp_url())
    viewers = [await RawRtsp.connect(camera.rtsp_url()) for _ in range(3)]
    try:
        await slow.play(camera.rtsp_url(with_credentials=False))  # …and never reads again
        for v in viewers:
            await v.play(camera.rtsp_url(with_credentials=False))
        results = await asyncio.gather(*(v.read_access_units(40) for v in viewers))
        for units in results:
            seqs = [h264.find_stamp(h264.join_annexb(n)).seq for _, n in units]
            assert seqs == list(range(seqs[0], seqs[0] + 40))
    finally:
        for c in [slow, *viewers]:
            await c.close()


async def test_idle_connection_times_out() -> None:
    from .conftest import SMALL

    async with SimCamera(session_timeout_s=1.0, **SMALL) as cam:
        client = await RawRtsp.connect(cam.rtsp_url())
        try:
            await client.play(cam.rtsp_url(with_credentials=False))
            # No keep-alive and no RTCP from us: the server must close the connection.
            async with asyncio.timeout(30):
                with pytest.raises(asyncio.IncompleteReadError):
                    while True:
                        await client.read_interleaved()
        finally:
            await client.close()


async def test_fuzzed_requests_never_crash_the_server(camera: SimCamera) -> None:
    """Mutated and random requests: each gets an RTSP status line or a closed socket, never a hang."""
    rng = random.Random(3)
    url = camera.rtsp_url(with_credentials=False)
    valid = [
        f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n".encode(),
        f"SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\n\r\n".encode(),
        f"PLAY {url} RTSP/1.0\r\nCSeq: 4\r\nSession: 12345678\r\n\r\n".encode(),
    ]
    viewer = await RawRtsp.connect(camera.rtsp_url())
    try:
        await viewer.play(url)
        for i in range(150):
            data = bytearray(rng.choice(valid))
            if i % 3 == 0:
                data = bytearray(rng.randbytes(rng.randrange(1, 300))) + b"\r\n\r\n"
            else:
                for _ in range(rng.randrange(1, 6)):
                    pos = rng.randrange(len(data))
                    data[pos : pos + rng.randrange(0, 4)] = rng.randbytes(rng.randrange(0, 4))
                data += b"\r\n\r\n"
            reader, writer = await asyncio.open_connection("127.0.0.1", camera.rtsp.port)
            try:
                writer.write(bytes(data))
                await writer.drain()
                # An interleaved '$' frame (after stray CR/LF) legitimately waits for its payload.
                frame = bytes(data).lstrip(b"\r\n").startswith(b"$")
                if not frame:
                    async with asyncio.timeout(5):
                        reply = await reader.readuntil(b"\r\n")
                    assert re.fullmatch(rb"RTSP/1\.0 [1-5]\d\d [^\r\n]*\r\n", reply), (data, reply)
            finally:
                writer.close()
        units = await viewer.read_access_units(15)
        seqs = [h264.find_stamp(h264.join_annexb(n)).seq for _, n in units]
        assert seqs == list(range(seqs[0], seqs[0] + 15))
        rc, data, err = await ffprobe(camera.rtsp_url())
        assert rc == 0, err
    finally:
        await viewer.close()


async def test_real_client_keeps_its_session_alive() -> None:
    """FFmpeg honours the Session timeout with keep-alives: a 2 s timeout never cuts a 5 s read."""
    from .conftest import SMALL

    async with SimCamera(session_timeout_s=2.0, **SMALL) as cam:
        frames, errors = await asyncio.to_thread(read_frames, cam.rtsp_url(), 75)
    seqs = [f.seq for f in frames]
    assert errors == 0 and len(seqs) == 75 and seqs == list(range(seqs[0], seqs[0] + 75))


async def test_unauthenticated_requests_learn_nothing(camera: SimCamera) -> None:
    client = await RawRtsp.connect(camera.rtsp_url())
    try:
        base = camera.rtsp_url(with_credentials=False).rsplit("/sim-1/main", 1)[0]
        for path in ("/sim-1/main", "/sim-9/main"):
            resp = await client.request("DESCRIBE", base + path, auth=False)
            assert resp.status == 401 and not resp.body
    finally:
        await client.close()


async def test_rtp_over_udp_with_ffprobe_and_pyav(camera: SimCamera, ffprobe_bin: str) -> None:
    rc, data, err = await ffprobe(camera.rtsp_url(), transport="udp")
    assert rc == 0 and (data["streams"][0]["codec_name"], data["streams"][0]["width"]) == ("h264", 640), err
    frames, errors = await asyncio.to_thread(read_frames, camera.rtsp_url(), 30, transport="udp")
    seqs = [f.seq for f in frames]
    assert errors == 0 and seqs == list(range(seqs[0], seqs[0] + 30))


async def test_udp_setup_answers_server_ports_and_sends_only_to_the_client(camera: SimCamera) -> None:
    import socket

    rtp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp_sock.bind(("127.0.0.1", 0))
    rtp_sock.setblocking(False)
    port = rtp_sock.getsockname()[1]
    client = await RawRtsp.connect(camera.rtsp_url())
    try:
        url = camera.rtsp_url(with_credentials=False)
        assert (await client.request("DESCRIBE", url)).status == 200
        resp = await client.request(
            "SETUP", url + "/trackID=0", {"Transport": f"RTP/AVP;unicast;client_port={port}-{port + 1}"}
        )
        assert resp.status == 200
        transport = resp.headers["transport"]
        assert f"client_port={port}-{port + 1}" in transport
        server_rtp, server_rtcp = (
            int(p) for p in transport.split("server_port=")[1].split(";")[0].split("-")
        )
        assert server_rtp % 2 == 0 and server_rtcp == server_rtp + 1
        assert (await client.request("PLAY", url)).status == 200
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(10):
            packet, addr = await loop.sock_recvfrom(rtp_sock, 2048)
        assert addr == ("127.0.0.1", server_rtp) and packet[0] == 0x80 and packet[1] & 0x7F == 96
        assert (await client.request("TEARDOWN", url)).status == 200
    finally:
        await client.close()
        rtp_sock.close()
