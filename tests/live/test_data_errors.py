"""A value the database refuses is the client's fault, answered 422 through a live server: the seed's own "Database &
Redis" snippet, unchanged, with a path value that is no integer; PostgreSQL's data exceptions (class 22) caused by
arguments; SQLite's refusals. The problem names the argument's position, never the statement or the value; the
server logs a warning and no traceback; a fault of the statement itself stays a 500."""

from __future__ import annotations

import httpx
import pytest

from _helpers import require_service

pytestmark = [pytest.mark.live]

SQL_WORDS = ("SELECT", "INSERT", "::", "$1 ", "varchar", "asyncpg", "sqlite3")


def refused(response: httpx.Response, *secrets: str, argument: int | None = 1) -> dict:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["title"]) == (422, "Unprocessable Content")  # RFC 9110's name on every Python
    assert problem.get("argument") == argument
    told = str({key: value for key, value in problem.items() if key != "instance"})  # instance: the request's path
    for leaked in (*SQL_WORDS, *secrets):
        assert leaked not in told, (leaked, told)
    return problem


@pytest.fixture(scope="module")
def errors_server(live_module):
    pytest.importorskip("asyncpg")
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return live_module("data_errors_app:app", ready_path="/__ready").start()


@pytest.mark.services
def test_the_seed_snippet_answers_422_for_a_path_value_that_is_no_integer(live, seed_snippet):
    server = live("seed_app:app", ready_path="/openapi.json", env={"PYTHONPATH": str(seed_snippet)}).start()

    problem = refused(httpx.get(server.url + "/users/abc", timeout=5), "abc")
    assert problem["detail"].startswith("The database refused query argument $1:")
    refused(httpx.get(server.url + "/users/99999999999", timeout=5), "99999999999")  # past int4
    assert httpx.get(server.url + "/users/1", timeout=5).status_code == 200  # the pool and the worker are fine

    log = server.stop()
    assert "the database refused argument $1" in log  # logged (at warning level) with the driver's message
    assert "Traceback" not in log


@pytest.mark.services
def test_postgresql_data_exceptions_caused_by_arguments(errors_server):
    url = errors_server.url
    refused(httpx.get(url + "/pg/cast/abc", timeout=5), "abc")  # 22P02, found by the quoted text
    assert httpx.get(url + "/pg/cast/42", timeout=5).json() == {"value": 42}
    refused(httpx.get(url + "/pg/number/3000000000", timeout=5))  # the driver: out of int4 range
    refused(httpx.post(url + "/pg/names", json={"name": "far too long"}, timeout=5), "far too long", argument=None)
    assert httpx.post(url + "/pg/names", json={"name": "Ada"}, timeout=5).json() == {"saved": True}
    refused(httpx.get(url + "/pg/day", params={"at": "2020-13-45"}, timeout=5), "2020-13-45")  # 22008


@pytest.mark.services
def test_a_fault_of_the_statement_itself_stays_a_500(errors_server):
    response = httpx.get(errors_server.url + "/pg/broken", timeout=5)
    assert response.status_code == 500
    assert "abc" not in response.text and "SELECT" not in response.text
    assert httpx.get(errors_server.url + "/sqlite/broken", timeout=5).status_code == 500


@pytest.mark.services
def test_sqlite_refusals(errors_server):
    url = errors_server.url
    # the seed's handler on SQLite: dynamically typed, "abc" simply matches no row
    assert httpx.get(url + "/sqlite/items/abc", timeout=5).status_code == 204
    refused(httpx.get(url + "/sqlite/huge/" + "9" * 30, timeout=5), "9" * 30)  # past 64 bits
    refused(httpx.post(url + "/sqlite/strict", json={"qty": "abc"}, timeout=5), "abc", argument=None)  # STRICT
    refused(httpx.post(url + "/sqlite/strict", json={"qty": {"nested": 1}}, timeout=5), "nested")  # cannot bind
    refused(httpx.post(url + "/sqlite/many", json={"qty": [1, 2, [3]]}, timeout=5))  # one run of a batch
    assert httpx.post(url + "/sqlite/strict", json={"qty": 3}, timeout=5).json() == {"saved": True}
