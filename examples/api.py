"""A typed API: DTO validation, dependency injection, background tasks, uploads and OpenAPI documentation.

Run it with ``python examples/api.py`` and open http://127.0.0.1:8000/docs (Swagger UI) or /redoc.

    curl -X POST http://127.0.0.1:8000/books -H 'content-type: application/json' \\
         -d '{"title": "Dune", "author": "Frank Herbert", "year": 1965}'
    curl 'http://127.0.0.1:8000/books?limit=5'
    curl -F cover=@README.md http://127.0.0.1:8000/books/1/cover
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Annotated

import msgspec

from cello import (
    App,
    BackgroundTasks,
    Blueprint,
    Depends,
    Header,
    HTTPException,
    OpenAPIConfig,
    Query,
    UploadFile,
)

logger = logging.getLogger("examples.api")

app = App(openapi=OpenAPIConfig(title="Bookshelf", version="1.0.0", description="A small typed API on Cello."))


class BookIn(msgspec.Struct, forbid_unknown_fields=True):
    """What a client sends to create a book."""

    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    author: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    year: Annotated[int, msgspec.Meta(ge=-3000, le=3000)]
    tags: Annotated[list[Annotated[str, msgspec.Meta(max_length=30)]], msgspec.Meta(max_length=10)] = []


class Book(msgspec.Struct):
    """A stored book."""

    id: int
    title: str
    author: str
    year: int
    tags: list[str] = []
    cover_sha256: str | None = None


class Shelf:
    """An in-memory store, shared by all requests of a worker (thread-safe for the sync handlers)."""

    def __init__(self) -> None:
        self.books: dict[int, Book] = {}
        self.next_id = 1
        self.lock = threading.Lock()
        self.events: list[str] = []

    def add(self, data: BookIn) -> Book:
        with self.lock:
            book = Book(self.next_id, data.title, data.author, data.year, list(data.tags))
            self.books[book.id] = book
            self.next_id += 1
            return book

    def get(self, book_id: int) -> Book:
        book = self.books.get(book_id)
        if book is None:
            raise HTTPException(404, f"There is no book {book_id}.")
        return book


def get_shelf() -> Shelf:
    return shelf


shelf = Shelf()


def session(x_reader: Annotated[str | None, Header(max_length=64)] = None) -> Iterator[str]:
    """A per-request resource with teardown: here, a reader name for the log."""
    reader = x_reader or "anonymous"
    yield reader
    logger.debug("request by %s done", reader)


async def notify(event: str) -> None:
    await asyncio.sleep(0)  # a real app would send a mail or a message here
    shelf.events.append(event)


books = Blueprint("/books", name="books")


@books.get("/")
def list_books(
    limit: Annotated[int, Query(ge=1, le=100, description="At most this many books")] = 20,
    author: Annotated[str | None, Query(max_length=200)] = None,
    shelf: Shelf = Depends(get_shelf),
) -> list[Book]:
    """List books, oldest first."""
    found = [b for b in shelf.books.values() if author is None or b.author == author]
    return found[:limit]


@books.post("/", status_code=201)
async def create_book(
    book: BookIn,
    background: BackgroundTasks,
    reader: str = Depends(session),
    shelf: Shelf = Depends(get_shelf),
) -> Book:
    """Add a book; subscribers hear about it after the response is sent."""
    stored = shelf.add(book)
    background.add_task(notify, f"{reader} added {stored.title}")
    return stored


@books.get("/{book_id:int}")
def get_book(book_id: int, shelf: Shelf = Depends(get_shelf)) -> Book:
    """One book by id."""
    return shelf.get(book_id)


@books.post("/{book_id:int}/cover")
async def upload_cover(book_id: int, cover: UploadFile, shelf: Shelf = Depends(get_shelf)) -> Book:
    """Attach a cover image (any file; only its digest is kept)."""
    book = shelf.get(book_id)
    digest = hashlib.sha256()
    async for chunk in cover.stream():
        digest.update(chunk)
    book.cover_sha256 = digest.hexdigest()
    return book


@app.get("/events")
def events(shelf: Shelf = Depends(get_shelf)) -> list[str]:
    """What the background tasks have done so far."""
    return list(shelf.events)


app.register_blueprint(books)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
