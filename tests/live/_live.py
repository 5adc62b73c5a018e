"""Helpers shared by the live tests (conftest.py holds the fixtures): the environment every server gets, curl,
and the search for server processes left running."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pytest

APPS_DIR = Path(__file__).resolve().parent.parent / "apps"
TOKEN = uuid.uuid4().hex
LIVE_ENV = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(APPS_DIR), os.environ.get("PYTHONPATH")])),
    "CELLO_LIVE_TOKEN": TOKEN,
}


@dataclass(frozen=True)
class Certs:
    ca: str
    cert: str
    key: str


def token_processes(exclude_groups: Collection[int] = ()) -> dict[int, str]:
    """Live processes (not zombies, not this one, not in ``exclude_groups``) carrying this session's token."""
    found = {}
    needle = f"CELLO_LIVE_TOKEN={TOKEN}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
            if fields[0] in (b"Z", b"X") or int(fields[2]) in exclude_groups:
                continue
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if needle not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                found[int(entry)] = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def curl(*args: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    """Run curl, bounded in time; skip when it is not installed (fail when CELLO_REQUIRE_SERVICES=1)."""
    program = shutil.which("curl")
    if program is None:
        if os.environ.get("CELLO_REQUIRE_SERVICES") == "1":
            pytest.fail("curl is not installed and CELLO_REQUIRE_SERVICES=1")
        pytest.skip("curl is not installed")
    return subprocess.run(
        [program, "-sS", "--max-time", str(int(timeout)), *args],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
        check=False,
    )


def curl_get(url: str, *args: str) -> tuple[str, str]:
    """``(body, http_version)`` of a successful curl GET; the version as curl reports it: "1.1", "2"."""
    result = curl(*args, "-w", "\n--curl--%{http_version}", url)
    assert result.returncode == 0, f"curl failed ({result.returncode}): {result.stderr}"
    body, _, version = result.stdout.rpartition("\n--curl--")
    return body, version
