"""The same appends through the ``eventsourcing`` library (its PostgreSQL persistence, psycopg), run pinned to one
core in its own venv (benchmarks/patterns.py): an aggregate per writer (a thread each: the library is
synchronous), ``EVENTS`` deposits recorded, then saved — one transaction — for ``SECONDS``; one JSON line out.

    python eventsourcing_bench.py WRITERS EVENTS SECONDS
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.parse

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class Account(Aggregate):
    def __init__(self) -> None:
        self.balance = 0

    @event("Deposited")
    def deposit(self, amount: int) -> None:
        self.balance += amount


def main(writers: int, events: int, seconds: float) -> None:
    url = urllib.parse.urlparse(os.environ["BENCH_DB_URL"])
    env = {"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_DBNAME": url.path.lstrip("/"),
           "POSTGRES_HOST": url.hostname or "127.0.0.1", "POSTGRES_PORT": str(url.port or 5432),
           "POSTGRES_USER": url.username or "postgres", "POSTGRES_PASSWORD": url.password or "",
           "POSTGRES_POOL_SIZE": str(writers), "CREATE_TABLE": "y"}  # fmt: skip
    app = Application(env=env)
    counts = [0] * writers
    deadline = time.perf_counter() + seconds

    def write(n: int) -> None:
        account = Account()
        app.save(account)
        while time.perf_counter() < deadline:
            for _ in range(events):
                account.deposit(1)
            app.save(account)
            counts[n] += events

    started = time.perf_counter()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"events_per_s": sum(counts) / (time.perf_counter() - started)}))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]))
