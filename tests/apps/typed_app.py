"""The typed-handler features on one app, served on every face by the tests: uploads, forms, background tasks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import threading
from typing import Annotated

import msgspec

from cello import (
    App,
    BackgroundTasks,
    Depends,
    File,
    Form,
    Header,
    HTTPException,
    MultipartLimits,
    Query,
    Request,
    UploadFile,
)

app = App()
log: list[str] = []
done = threading.Event()
OPEN_FILES: list[UploadFile] = []


@app.get("/__ready")
def ready() -> str:
    return "ok"


class Profile(msgspec.Struct):
    name: str
    age: int
    tags: list[str] = []


@app.post("/upload")
async def upload(file: UploadFile, note: str = Form("none")):
    data = await file.read()
    OPEN_FILES.append(file)
    return {
        "filename": file.filename,
        "content_type": file.content_type,
        "size": file.size,
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": note,
        "in_memory": file.in_memory,
    }


@app.post("/upload-optional")
async def upload_optional(file: UploadFile | None = File(None), note: str = Form("none")):
    return {"file": None if file is None else file.filename, "note": note}


@app.post("/uploads")
async def uploads(files: Annotated[list[UploadFile], File()], title: Annotated[str, Form()]):
    return {"title": title, "names": [f.filename for f in files], "sizes": [f.size for f in files]}


@app.post("/upload-bytes")
def upload_bytes(blob: bytes = File()):
    return {"size": len(blob)}


@app.post("/upload-limited", multipart=MultipartLimits(max_file_size=1000, max_parts=3, max_size=5000))
async def upload_limited(file: UploadFile):
    return {"size": file.size}


@app.post("/upload-save")
async def upload_save(file: UploadFile):
    target = os.path.join(tempfile.gettempdir(), f"cello-save-{os.getpid()}.bin")
    written = await file.save(target)
    with open(target, "rb") as handle:
        same = handle.read() == await _reread(file)
    os.unlink(target)
    return {"written": written, "same": same}


async def _reread(file: UploadFile) -> bytes:
    await file.seek(0)
    return b"".join([chunk async for chunk in file.stream(1000)])


@app.post("/form-model")
def form_model(profile: Annotated[Profile, Form()]):
    return {"name": profile.name, "age": profile.age, "tags": profile.tags}


@app.post("/form-fields")
def form_fields(name: str = Form(), age: int = Form(), tags: list[str] = Form([])):
    return {"name": name, "age": age, "tags": tags}


@app.post("/raw-form")
async def raw_form(request: Request):
    form = await request.form()
    return {
        "fields": {k: v for k, v in form.multi_items() if isinstance(v, str)},
        "files": [(k, v.filename, v.size) for k, v in form.multi_items() if not isinstance(v, str)],
    }


@app.post("/raw-form-sync")
def raw_form_sync(request: Request):
    form = request.form()
    return {"count": len(form.multi_items())}


@app.get("/open-files")
def open_files():
    return {"closed": [f.file.closed for f in OPEN_FILES]}


# -- background tasks ---------------------------------------------------------------------------------------


def record(message: str) -> None:
    log.append(message)


async def record_later(message: str) -> None:
    await asyncio.sleep(0.05)
    log.append(message)


def explode() -> None:
    raise RuntimeError("background failure")


@app.post("/tasks")
def tasks(background: BackgroundTasks, message: str = "x"):
    background.add_task(record, f"sync {message}")
    background.add_task(record_later, f"async {message}")
    background.add_task(explode)
    background.add_task(record, f"after failure {message}")
    log.append(f"handler {message}")
    return {"scheduled": len(background)}


def audit(request: Request) -> None:
    request.background.add_task(record, f"audit {request.path}")


@app.post(
    "/tasks-from-dependency",
)
async def tasks_from_dependency(_: None = Depends(audit)):
    return {"ok": True}


@app.post("/tasks-then-fail")
def tasks_then_fail(background: BackgroundTasks):
    background.add_task(record, "must not run")
    raise HTTPException(400, "refused")


@app.get("/log")
def read_log():
    return {"log": log}


@app.delete("/log")
def clear_log():
    log.clear()


# -- templates and static files -----------------------------------------------------------------------------

from pathlib import Path  # noqa: E402

from cello import TemplateResponse, Templates  # noqa: E402

SITE = Path(__file__).resolve().parent / "site"
app.templates = Templates(SITE / "templates")
app.static("/static", SITE / "public")
POST = {"id": 3, "title": "<script>alert(1)</script>", "author": '"quoted"', "body": "<b>bold</b> & more"}


@app.get("/posts/{post_id:int}")
def show_post(request: Request, post_id: int):
    return TemplateResponse(request, "post.html", {"post": {**POST, "id": post_id}})


@app.get("/posts-async/{post_id:int}")
async def show_post_async(post_id: int):
    return await app.render("post.html", post={**POST, "id": post_id}, request=None)


@app.get("/note")
def note(request: Request):
    return app.templates.response("note.txt", {"text": "<not escaped>"}, request=request)


# -- typed parameters and dependencies ----------------------------------------------------------------------

import pydantic  # noqa: E402


class Order(pydantic.BaseModel):
    sku: str
    quantity: int = pydantic.Field(gt=0)


resources: list[str] = []


async def connection():
    resources.append("open")
    try:
        yield "conn"
    finally:
        resources.append("close")


def current_user(x_user: Annotated[str, Header()] = "anonymous"):
    return x_user


@app.post("/shops/{shop_id}/items")
async def add_item(
    shop_id: int,
    item: Profile,
    dry_run: bool = False,
    conn: str = Depends(connection),
    user: str = Depends(current_user),
):
    return {"shop_id": shop_id, "item": item.name, "dry_run": dry_run, "conn": conn, "user": user}


@app.post("/orders", status_code=201)
def create_order(order: Order, user: str = Depends(current_user)) -> Order:
    return order


@app.get("/resources")
def read_resources():
    return {"events": resources}


# -- JSON bodies only from requests that say they are JSON ---------------------------------------------------


class Item(pydantic.BaseModel):
    name: str


@app.post("/items")
def create_item(item: Item):
    log.append(f"created {item.name}")
    return {"name": item.name}


@app.post("/items-from-any-client", strict_content_type=False)
def create_item_from_any_client(item: Item):
    return {"name": item.name}


@app.post("/any-json")
def any_json(document: dict):
    return document


@app.post("/raw-json")
def raw_json(request: Request):
    return {"read": request.json()}


# -- optional bodies -----------------------------------------------------------------------------------------

from typing import Optional  # noqa: E402


@app.post("/optional/model")
def optional_model(item: Item | None = None):
    return {"item": None if item is None else item.name}


@app.post("/optional/typing")
def optional_typing(item: Optional[Item] = None):  # noqa: UP045 - the spelling under test
    return {"item": None if item is None else item.name}


@app.post("/optional/list")
def optional_list(items: list[Item] | None = None):
    return {"items": None if items is None else [item.name for item in items]}


@app.post("/optional/struct")
def optional_struct(profile: Profile | None = None):
    return {"profile": None if profile is None else profile.name}


# -- list parameters -------------------------------------------------------------------------------------------


@app.get("/lists")
def lists(
    x_tags: list[str] = Header(),
    tags: list[str] = Query(["a"], min_length=1),
    ids: Annotated[list[int], Query(max_length=3)] = [1],
):
    return {"x_tags": x_tags, "tags": tags, "ids": ids}


# -- where an error is, and numbers that are not finite ------------------------------------------------------


@app.post("/counts")
def counts(counts: dict[str, int]):
    return counts


class Measure(pydantic.BaseModel):
    value: float


class Reading(msgspec.Struct):
    value: float


class AnyNumber(pydantic.BaseModel):
    value: float = pydantic.Field(allow_inf_nan=True)


@app.post("/measures")
def measure(measure: Measure):
    return {"value": measure.value}


@app.post("/readings")
def reading(reading: Reading):
    return {"value": reading.value}


@app.post("/any-number")
def any_number(number: AnyNumber):
    return {"finite": number.value == number.value and abs(number.value) != float("inf")}
