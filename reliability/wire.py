"""Raw HTTP/1.1 over a socket, for requests no well-behaved client would send, and the verdict on each answer.

``exchange`` writes the bytes as given (one connection per request, so a broken request cannot spoil the next),
half-closes, and reads the answer with h11, bounded in time. ``judge`` says what is wrong with an answer, if
anything: a 5xx, no answer in time, or an error body that is not RFC 9457 problem+json.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field

import h11
import orjson

PROBLEM_JSON = "application/problem+json"


@dataclass
class Answer:
    """What came back: a response, a connection closed without one (``status`` None), or nothing in time."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    timed_out: bool = False
    seconds: float = 0.0
    head: bool = False  # the answer to a HEAD request, which has no body


def exchange(
    host: str, port: int, raw: bytes, *, method: str = "GET", timeout: float = 10.0, complete: bool = True
) -> Answer:
    """Send ``raw`` on a fresh connection and read one response (``method`` tells h11 whether a body follows).

    A request that may be incomplete (``complete=False``: a Content-Length or chunk size that lies) leaves the
    server waiting for bytes that never come, rightly: after a short grace the write side is shut so the server
    sees the end. Complete requests keep the connection open both ways until the answer, because an engine may
    (rightly, too) drop a response once its client has half-closed.
    """
    started = time.monotonic()
    answer = Answer(head=method == "HEAD")
    parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=1024 * 1024)
    # h11 must believe it sent a request before it reads a response
    parser.send(h11.Request(method="HEAD" if method == "HEAD" else "GET", target="/", headers=[("host", "x")]))
    parser.send(h11.EndOfMessage())
    deadline = started + timeout
    half_close_at = None if complete else started + 0.3
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            try:
                sock.sendall(raw)
            except OSError:
                pass  # the server may refuse and close before reading everything: its answer is still readable
            body = bytearray()
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    now = time.monotonic()
                    if now >= deadline:
                        answer.timed_out = True
                        break
                    sock.settimeout(min(deadline, half_close_at or deadline) - now)
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        if half_close_at is not None and time.monotonic() < deadline:
                            half_close_at = None
                            sock.shutdown(socket.SHUT_WR)  # the server sees the end of what we send
                            continue
                        answer.timed_out = True
                        break
                    except ConnectionResetError:
                        data = b""
                    parser.receive_data(data)
                elif isinstance(event, h11.Response):
                    answer.status = event.status_code
                    answer.headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
                elif isinstance(event, h11.InformationalResponse):
                    continue
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
            answer.body = bytes(body)
    except h11.RemoteProtocolError:
        pass  # closed mid-response or garbled: status stays as far as it got
    except OSError:
        pass  # refused or reset before any answer
    answer.seconds = time.monotonic() - started
    return answer


# the target app stamps every response it makes with a request id: an answer without one came from the engine
APP_MARKER = "x-request-id"


def judge(answer: Answer) -> tuple[str, str | None]:
    """``(kind, defect)``: what sort of answer this is (counted by the long runs) and what is wrong with it, if
    anything. A request the engine itself cannot parse never reaches the app: the engine refuses it in its own
    words (granian with an empty 400 or by closing, uvicorn with a plain-text 400), which is counted, not faulted.
    """
    if answer.timed_out:
        return "hang", "no answer in time"
    if answer.status is None:
        return "engine-closed", None
    if answer.status >= 500:
        return "5xx", f"server error {answer.status}: {answer.body[:300]!r}"
    if answer.status < 400:
        return f"{answer.status // 100}xx", None
    if APP_MARKER not in answer.headers:
        return "engine-4xx", None
    if not answer.body:
        return "app-4xx", None if answer.head else f"{answer.status} with an empty body"
    media_type = answer.headers.get("content-type", "").split(";")[0].strip()
    if media_type != PROBLEM_JSON:
        return "app-4xx", f"{answer.status} with a {media_type or 'typeless'} body: {answer.body[:200]!r}"
    try:
        problem = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return "app-4xx", f"{answer.status} with a problem+json body that is not JSON: {answer.body[:200]!r}"
    if not isinstance(problem, dict) or problem.get("status") != answer.status or "title" not in problem:
        return "app-4xx", f"{answer.status} with a malformed problem document: {problem!r:.200}"
    return "app-4xx", None
