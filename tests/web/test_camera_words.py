"""The camera's last error in the owner's words (hub/web/lib/words.js `cameraProblem`), fed with what
real FFmpeg says when a real RTSP open fails here: a camera that answers 5XX, 404, 401 or 461, and a
port nobody listens on. The camera's port is one with a 5 and two digits in it (5554) when free: a
bare-number match once turned "Connection refused" on port 554 into "a server error".
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from hub.ingest.rtsp import _open_error
from tests.conftest import free_port

WORDS = Path(__file__).resolve().parents[2] / "hub" / "web" / "lib" / "words.js"


def _listen() -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(("127.0.0.1", 5554))
    except OSError:
        server.bind(("127.0.0.1", free_port()))
    server.listen(4)
    return server


@contextlib.contextmanager
def rtsp_answering(status: str) -> Iterator[int]:
    """A camera that answers every RTSP request with `status` (e.g. "503 Service Unavailable")."""
    server = _listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                with contextlib.suppress(OSError):
                    while not stop.is_set():
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                        while b"\r\n\r\n" in data:
                            head, data = data.split(b"\r\n\r\n", 1)
                            cseq = next(
                                (ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n") if ln.lower().startswith(b"cseq:")),
                                b"1",
                            )  # fmt: skip
                            conn.sendall(b"RTSP/1.0 " + status.encode() + b"\r\nCSeq: " + cseq + b"\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def ffmpeg_open_error(url: str) -> str:
    """What the hub stores as the camera's last error after a real open of `url` fails."""
    try:
        with av.open(url, options={"rtsp_transport": "tcp", "timeout": "3000000"}, timeout=5):
            pass
    except av.error.FFmpegError as exc:
        return str(_open_error("front", exc))
    raise AssertionError(f"{url} opened")


def camera_problem(texts: list[str]) -> list[str]:
    script = (
        f"import {{ cameraProblem }} from {json.dumps(WORDS.as_uri())};"
        "const texts = JSON.parse(process.argv[1]);"
        "console.log(JSON.stringify(texts.map(cameraProblem)));"
    )
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script, json.dumps(texts)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    result: list[str] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js (as the browser tests' npm does)")
def test_real_ffmpeg_errors_become_the_sentence_for_what_went_wrong() -> None:
    cases: list[tuple[str, str]] = []
    for status, words in (
        ("503 Service Unavailable", "The camera answered with a server error"),
        ("404 Not Found", "The camera has no video at this address: check the path in the RTSP URL"),
        ("401 Unauthorized", "The camera refused the user name or password"),
    ):
        with rtsp_answering(status) as port:
            cases.append((ffmpeg_open_error(f"rtsp://admin:secret@127.0.0.1:{port}/stream1"), words))
    port = _listen()
    closed = port.getsockname()[1]
    port.close()  # nobody listens there now
    cases.append(
        (
            ffmpeg_open_error(f"rtsp://127.0.0.1:{closed}/stream1"),
            "The camera refused the connection: is it switched on, and is the address right?",
        )
    )
    cases.append(
        (
            "front: no video for 5.2 s (read_timeout_s 5)",
            "The camera kept the connection open but sent no video",
        )
    )
    got = camera_problem([text for text, _ in cases])
    for (text, words), sentence in zip(cases, got, strict=True):
        assert "secret" not in text, text  # the stored error never holds the password
        assert sentence == words, (text, sentence)
