"""Uploads, forms and background tasks through every engine face."""

from __future__ import annotations

import hashlib
import time

import pytest


@pytest.fixture
def client(typed_client):
    return typed_client


def test_upload_small_file(client):
    payload = bytes(range(256)) * 10
    response = client.post("/upload", files={"file": ("data.bin", payload, "application/x-thing")},
                           data={"note": "hi"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json() == {
        "filename": "data.bin", "content_type": "application/x-thing", "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(), "note": "hi", "in_memory": True,
    }  # fmt: skip


def test_large_upload_spools_to_disk_and_arrives_byte_exact(client):
    payload = bytes(range(256)) * (9 * 1024)  # 2.25 MiB: past the 1 MiB spool threshold
    response = client.post("/upload", files={"file": ("big.bin", payload)})
    data = response.json()
    assert data["size"] == len(payload)
    assert data["sha256"] == hashlib.sha256(payload).hexdigest()
    assert data["in_memory"] is False


def test_uploaded_files_are_closed_after_the_request(client):
    client.post("/upload", files={"file": ("a.txt", b"abc")})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        closed = client.get("/open-files").json()["closed"]
        if closed and all(closed):
            break
        time.sleep(0.05)
    assert closed and all(closed)


def test_several_files_and_fields(client):
    files = [("files", ("a.txt", b"aaa")), ("files", ("b.txt", b"bb"))]
    response = client.post("/uploads", files=files, data={"title": "two"})
    assert response.json() == {"title": "two", "names": ["a.txt", "b.txt"], "sizes": [3, 2]}


def test_file_as_bytes(client):
    assert client.post("/upload-bytes", files={"blob": ("x", b"12345")}).json() == {"size": 5}


def test_missing_file_is_422(client):
    response = client.post("/upload", data={"note": "no file"}, files={"other": ("x", b"1")})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["file", "file"]


def browser_form(*parts: str) -> tuple[bytes, dict[str, str]]:
    """A multipart body as a browser sends it, from ready-made part heads and contents."""
    body = "".join(f"--B\r\n{part}\r\n" for part in parts) + "--B--\r\n"
    return body.encode(), {"content-type": "multipart/form-data; boundary=B"}


EMPTY_FILE_INPUT = (
    'Content-Disposition: form-data; name="file"; filename=""\r\nContent-Type: application/octet-stream\r\n\r\n'
)
NOTE = 'Content-Disposition: form-data; name="note"\r\n\r\nhello'


def test_an_empty_file_input_is_no_upload(client):
    body, headers = browser_form(EMPTY_FILE_INPUT, NOTE)
    assert client.post("/upload-optional", content=body, headers=headers).json() == {"file": None, "note": "hello"}
    refused = client.post("/upload", content=body, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"loc": ["file", "file"], "msg": "Field required", "type": "missing", "input": None}
    ]


def test_a_text_field_where_a_file_is_expected_says_so(client):
    body, headers = browser_form('Content-Disposition: form-data; name="file"\r\n\r\nnot a file')
    for path in ("/upload", "/upload-optional"):
        errors = client.post(path, content=body, headers=headers).json()["errors"]
        assert errors == [
            {"loc": ["file", "file"], "msg": "Input should be a file upload, not a text field", "type": "file_type",
             "input": "not a file"}
        ]  # fmt: skip


def test_upload_limits(client):
    assert client.post("/upload-limited", files={"file": ("x", b"1" * 1000)}).json() == {"size": 1000}
    too_big = client.post("/upload-limited", files={"file": ("x", b"1" * 1001)})
    assert too_big.status_code == 413
    assert too_big.headers["content-type"] == "application/problem+json"
    parts = [("file", ("x", b"1"))] + [(f"f{i}", (None, "v")) for i in range(4)]
    assert client.post("/upload-limited", files=parts).status_code == 413
    huge = client.post("/upload-limited", files={"file": ("x", b"1" * 900)}, data={"pad": "p" * 6000})
    assert huge.status_code == 413


def test_save_and_stream(client):
    payload = b"0123456789" * 500
    assert client.post("/upload-save", files={"file": ("s.bin", payload)}).json() == {"written": 5000, "same": True}


@pytest.mark.parametrize(
    "body",
    [
        b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue\r\n',  # no closing boundary
        b"garbage without any boundary",
        b"--b\r\nContent-Type: text/plain\r\n\r\nno disposition\r\n--b--\r\n",
        b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\xfe\r\n--b--\r\n',  # not UTF-8
    ],
)
def test_malformed_multipart_is_400(client, body):
    response = client.post("/raw-form", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/log").status_code == 200


def test_multipart_without_boundary_is_400(client):
    response = client.post("/upload", content=b"x", headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400


def test_raw_form_mixed(client):
    response = client.post("/raw-form", data={"a": "1", "b": "é"}, files={"f": ("f.txt", b"xyz")})
    assert response.json() == {"fields": {"a": "1", "b": "é"}, "files": [["f", "f.txt", 3]]}
    assert client.post("/raw-form", data={"a": "1"}).json() == {"fields": {"a": "1"}, "files": []}


def test_sync_form_call_on_multipart(client):
    assert client.post("/raw-form-sync", data={"a": "1"}, files={"f": ("f", b"1")}).json() == {"count": 2}


def test_form_model_and_fields(client):
    multipart = client.post("/form-model", data={"name": "ada", "age": "36"}, files={"x": ("x", b"")})
    assert multipart.json() == {"name": "ada", "age": 36, "tags": []}
    urlencoded = client.post("/form-fields", data={"name": "bob", "age": "7", "tags": ["a", "b"]})
    assert urlencoded.json() == {"name": "bob", "age": 7, "tags": ["a", "b"]}
    bad = client.post("/form-fields", data={"name": "bob", "age": "old"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["form", "age"]


def wait_for_log(client, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = client.get("/log").json()["log"]
        if predicate(log):
            return log
        time.sleep(0.05)
    return client.get("/log").json()["log"]


def test_background_tasks_run_after_response_in_order(client):
    client.delete("/log")
    response = client.post("/tasks?message=m")
    assert response.json() == {"scheduled": 4}
    log = wait_for_log(client, lambda entries: "after failure m" in entries)
    # the handler ran first, then every task in order; a failing task does not stop the next one
    assert log == ["handler m", "sync m", "async m", "after failure m"]


def test_background_from_dependency_and_dropped_on_error(client):
    client.delete("/log")
    assert client.post("/tasks-then-fail").status_code == 400
    client.post("/tasks-from-dependency")
    log = wait_for_log(client, lambda entries: "audit /tasks-from-dependency" in entries)
    assert log == ["audit /tasks-from-dependency"]


def test_typed_parameters_and_dependencies(client):
    client.get("/resources")
    response = client.post("/shops/3/items?dry_run=yes", json={"name": "pen", "age": 1}, headers={"x-user": "ada"})
    assert response.json() == {"shop_id": 3, "item": "pen", "dry_run": True, "conn": "conn", "user": "ada"}
    events = client.get("/resources").json()["events"]
    assert events[-2:] == ["open", "close"]  # teardown ran before this next request was answered


def test_validation_errors_on_every_face(client):
    response = client.post("/shops/x/items?dry_run=perhaps", json={"name": 5})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    locs = sorted(tuple(e["loc"]) for e in response.json()["errors"])
    assert locs == [("body", "name"), ("path", "shop_id"), ("query", "dry_run")]


def test_pydantic_body_and_typed_result(client):
    created = client.post("/orders", json={"sku": "A1", "quantity": 2})
    assert (created.status_code, created.json()) == (201, {"sku": "A1", "quantity": 2})
    refused = client.post("/orders", json={"sku": "A1", "quantity": 0})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "quantity"]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "text/json",
    ],
)
def test_a_json_body_parameter_refuses_a_body_not_sent_as_json(client, content_type):
    # a cross-site form or fetch() may send these without a CORS preflight: they must not reach the handler
    client.delete("/log")
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/items", "/any-json", "/shops/3/items"):
        response = client.post(path, content=b'{"name": "forged"}', headers=headers)
        assert response.status_code == 415, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert "application/json" in response.json()["detail"]
    assert client.get("/log").json() == {"log": []}  # the handler never ran


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "Application/JSON; charset=utf-8", "application/merge-patch+json", "application/vnd.api+json"],
)
def test_a_json_body_parameter_reads_json_media_types(client, content_type):
    response = client.post("/items", content=b'{"name": "pen"}', headers={"content-type": content_type})
    assert response.json() == {"name": "pen"}


def test_the_content_type_check_can_be_turned_off_and_request_json_reads_any_body(client):
    plain = {"content-type": "text/plain"}
    assert client.post("/items-from-any-client", content=b'{"name": "pen"}', headers=plain).json() == {"name": "pen"}
    assert client.post("/items-from-any-client", content=b'{"name": "pen"}').json() == {"name": "pen"}
    assert client.post("/raw-json", content=b'{"a": 1}', headers=plain).json() == {"read": {"a": 1}}
    assert client.post("/items", headers=plain).status_code == 422  # no body at all: missing, as before


def test_an_optional_body_is_read_from_the_body(client):
    for path in ("/optional/model", "/optional/typing"):
        assert client.post(path, json={"name": "pen"}).json() == {"item": "pen"}
        assert client.post(path).json() == {"item": None}
        refused = client.post(path, json={"name": 5})
        assert refused.status_code == 422 and refused.json()["errors"][0]["loc"] == ["body", "name"]
    assert client.post("/optional/list", json=[{"name": "a"}, {"name": "b"}]).json() == {"items": ["a", "b"]}
    assert client.post("/optional/list").json() == {"items": None}
    assert client.post("/optional/struct", json={"name": "ada", "age": 36}).json() == {"profile": "ada"}
    assert client.post("/optional/struct").json() == {"profile": None}
    operation = client.get("/openapi.json").json()["paths"]["/optional/model"]["post"]
    assert not operation.get("parameters")  # not a query parameter
    assert operation["requestBody"]["required"] is False


def test_list_headers_and_queries_read_and_documented(client):
    from openapi_spec_validator import validate

    response = client.get("/lists?tags=x&tags=y&ids=2", headers=[("x-tags", "a, b"), ("x-tags", "c")])
    assert response.json() == {"x_tags": ["a", "b", "c"], "tags": ["x", "y"], "ids": [2]}
    assert client.get("/lists", headers={"x-tags": "a"}).json() == {"x_tags": ["a"], "tags": ["a"], "ids": [1]}
    assert client.get("/lists?ids=1&ids=2&ids=3&ids=4", headers={"x-tags": "a"}).status_code == 422
    document = client.get("/openapi.json").json()
    validate(document)  # a list header is style "simple": "form" is for queries and cookies only
    styles = {p["name"]: (p["style"], p["explode"]) for p in document["paths"]["/lists"]["get"]["parameters"]}
    assert styles == {"x-tags": ("simple", False), "tags": ("form", True), "ids": ("form", True)}


def test_an_error_inside_a_dict_names_its_key_and_value(client):
    errors = client.post("/counts", json={"apples": 1, "pears": "many"}).json()["errors"]
    assert errors == [
        {"loc": ["body", "pears"], "msg": "Input should be a valid integer", "type": "int_type", "input": "many"}
    ]


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b"1" + b"0" * 400])
def test_a_number_that_is_not_finite_is_refused_unless_the_field_takes_it(client, number):
    body = b'{"value": ' + number + b"}"
    json_type = {"content-type": "application/json"}
    for path in ("/measures", "/readings"):  # pydantic and msgspec alike
        response = client.post(path, content=body, headers=json_type)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"][0]["loc"][0] == "body"
    assert client.post("/measures", content=b'{"value": 1e300}', headers=json_type).json() == {"value": 1e300}
    # a field that says it takes them (Field(allow_inf_nan=True)) still does
    assert client.post("/any-number", content=body, headers=json_type).json() == {"finite": False}


def test_one_422_speaks_one_style_and_echoes_no_raw_body(client):
    # a path value, a query constraint and a msgspec body: every message in pydantic's words and types
    response = client.post("/shops/x/items?dry_run=perhaps", json={"name": 5, "age": "old"})
    messages = {tuple(error["loc"]): (error["msg"], error["type"]) for error in response.json()["errors"]}
    assert messages[("body", "name")] == ("Input should be a valid string", "string_type")
    assert not any(msg.startswith(("Expected", "Object")) for msg, _ in messages.values())
    # JSON that does not parse, for a pydantic body: no base64 of the raw bytes in `input`
    broken = client.post("/orders", content=b'{"sku": "A1", "quantity": ', headers={"content-type": "application/json"})
    assert broken.status_code == 422
    [error] = broken.json()["errors"]
    assert (error["loc"], error["type"], error["input"]) == (["body"], "json_invalid", None)
