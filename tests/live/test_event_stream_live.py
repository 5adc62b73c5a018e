"""The event store followed live over Server-Sent Events from a real server (tests/apps/event_stream_app.py): the
stored events replayed, new ones arriving as they are appended, and a reconnection with Last-Event-ID resuming
after the last event seen, nothing repeated or skipped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]


def events(lines: Iterator[str], count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of an SSE stream: their id, name and JSON data."""
    found: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "data" in current:
                found.append(current)
                current = {}
                if len(found) == count:
                    return found
            continue
        field, _, value = line.partition(": ")
        current[field] = json.loads(value) if field == "data" else value
    return found


def test_replay_then_follow_then_resume(live: Any, tmp_path: Path) -> None:
    server = live("event_stream_app:app", env={"EVENTS_DB": str(tmp_path / "events.db")}).start()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for amount in (1, 2):
            assert client.post("/deposits", json={"account": "a", "amount": amount}).status_code == 200
        with client.stream("GET", "/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            replayed = events(lines, 2)
            client.post("/deposits", json={"account": "b", "amount": 3})
            [live_one] = events(lines, 1)
        assert [event["data"]["data"]["amount"] for event in [*replayed, live_one]] == [1, 2, 3]
        assert [event["event"] for event in replayed] == ["Deposited", "Deposited"]
        assert live_one["id"] == str(live_one["data"]["position"])
        client.post("/deposits", json={"account": "c", "amount": 4})
        # a browser reconnecting sends the last id it saw: the stream resumes after it
        with client.stream("GET", "/events", headers={"last-event-id": replayed[1]["id"]}) as stream:
            resumed = events(stream.iter_lines(), 2)
        assert [event["data"]["data"]["amount"] for event in resumed] == [3, 4]
