"""Slow clients: connections that trickle their headers or their body, and the latency everyone else sees
meanwhile. Used by test_slow_clients.py (bounded) and ``run.py slow`` (the published figures)."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx


@dataclass
class Attack:
    """What the slow connections saw: when each was cut off (seconds after it opened), and what it was told."""

    opened: int = 0
    cut_after: list[float] = field(default_factory=list)
    answers: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _trickle(host: str, port: int, mode: str, interval: float, stop: threading.Event, attack: Attack) -> None:
    try:
        sock = socket.create_connection((host, port), timeout=5)
    except OSError:
        return
    started = time.monotonic()
    with attack.lock:
        attack.opened += 1
    answer = b""
    with sock:
        try:
            if mode == "headers":
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                piece = b"X-Slow: 1\r\n"
            else:
                sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100000\r\n\r\n{")  # fmt: skip
                piece = b" "
            sock.settimeout(interval)
            while not stop.is_set():
                sock.sendall(piece)
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue
                answer += data
                if not data or b"\r\n\r\n" in answer:
                    break  # the server answered (and will close) or closed
        except OSError:
            pass  # reset or broken pipe: cut off
        else:
            if stop.is_set():
                return  # still open when the attack ended: not cut off
    with attack.lock:
        attack.cut_after.append(time.monotonic() - started)
        attack.answers.append(answer.split(b"\r\n", 1)[0])


@contextmanager
def slow_clients(host: str, port: int, connections: int, mode: str, interval: float = 0.5) -> Iterator[Attack]:
    """``connections`` clients trickling their ``mode`` ("headers" or "body") one piece per ``interval``."""
    attack = Attack()
    stop = threading.Event()
    threads = [
        threading.Thread(target=_trickle, args=(host, port, mode, interval, stop, attack), daemon=True)
        for _ in range(connections)
    ]
    for thread in threads:
        thread.start()
    try:
        yield attack
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def latencies(url: str, requests: int, seconds: float = 0.0) -> tuple[int, list[float]]:
    """(failures, latencies in ms) of sequential GETs on one kept-alive connection: at least ``requests`` of
    them, for at least ``seconds``."""
    failures = 0
    times: list[float] = []
    until = time.monotonic() + seconds
    with httpx.Client(timeout=10) as client:
        while len(times) < requests or time.monotonic() < until:
            started = time.perf_counter()
            try:
                ok = client.get(url).status_code == 200
            except httpx.HTTPError:
                ok = False
            times.append((time.perf_counter() - started) * 1000)
            failures += not ok
    return failures, times


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
