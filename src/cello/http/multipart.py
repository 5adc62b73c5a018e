"""Streaming ``multipart/form-data`` parsing on python-multipart, into a FormData of fields and UploadFiles.

The parser is fed chunk by chunk as the body arrives (or from the body already read), so a large upload never
sits in memory: files spill to disk past ``MultipartLimits.spool_size``. Every limit is checked as bytes arrive;
a malformed body is a 400, a body over a limit a 413, and on any failure every file opened so far is closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any, cast

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .datastructures import FormData, Headers
from .exceptions import BadRequest, PayloadTooLarge
from .uploads import MultipartLimits, UploadFile


def boundary_of(content_type: str) -> bytes:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise BadRequest("A multipart body needs a Content-Type of multipart/form-data with a boundary.")
    if len(boundary) > 200:
        raise BadRequest("The multipart boundary is too long.")
    return boundary


class _Collector:
    """python-multipart callbacks that build fields and files, enforcing the limits."""

    def __init__(self, limits: MultipartLimits) -> None:
        self.limits = limits
        self.items: list[tuple[str, Any]] = []
        self.parts = 0
        self.ended = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._name = ""
        self._field: bytearray | None = None
        self._file: UploadFile | None = None

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise PayloadTooLarge(f"The form has more than {self.limits.max_parts} parts.")
        self._headers = []

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        self._headers.append((self._header_name.decode("latin-1").lower(), self._header_value.decode("latin-1")))
        self._header_name.clear()
        self._header_value.clear()

    def headers_finished(self) -> None:
        headers = Headers(self._headers)
        disposition = headers.get("content-disposition")
        if disposition is None:
            raise BadRequest("A multipart part has no Content-Disposition header.")
        kind, options = parse_options_header(disposition)
        if kind != b"form-data" or b"name" not in options:
            raise BadRequest("A multipart part is not a named form-data part.")
        self._name = _text(options[b"name"])
        if b"filename" in options:
            self._file = UploadFile(
                _text(options[b"filename"]),
                headers.get("content-type", "application/octet-stream"),
                headers,
                self.limits.spool_size,
            )
            self._field = None
        else:
            self._field = bytearray()
            self._file = None

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            if self._file.size + (end - start) > self.limits.max_file_size:
                raise PayloadTooLarge(f"An uploaded file is larger than {self.limits.max_file_size} bytes.")
            self._file.write_chunk(data[start:end])
        elif self._field is not None:
            if len(self._field) + (end - start) > self.limits.max_field_size:
                raise PayloadTooLarge(f"A form field is larger than {self.limits.max_field_size} bytes.")
            self._field += data[start:end]

    def part_end(self) -> None:
        if self._file is not None:
            self._file.file.seek(0)
            self.items.append((self._name, self._file))
            self._file = None
        elif self._field is not None:
            try:
                self.items.append((self._name, self._field.decode("utf-8")))
            except UnicodeDecodeError:
                raise BadRequest(f"The form field {self._name!r} is not valid UTF-8.") from None
            self._field = None

    def end(self) -> None:
        self.ended = True

    def close_files(self) -> None:
        for _, value in self.items:
            if isinstance(value, UploadFile):
                value.close_sync()
        if self._file is not None:
            self._file.close_sync()


class _Feeder:
    def __init__(self, content_type: str, limits: MultipartLimits) -> None:
        self.limits = limits
        self.collector = _Collector(limits)
        self.parser = MultipartParser(boundary_of(content_type), cast(Any, self.collector.callbacks()))
        self.seen = 0

    def feed(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        if self.seen > self.limits.max_size:
            raise PayloadTooLarge(f"The form is larger than {self.limits.max_size} bytes.")
        try:
            self.parser.write(chunk)
        except MultipartParseError:
            raise BadRequest("The multipart body is malformed.") from None

    def finish(self) -> FormData:
        try:
            self.parser.finalize()
        except MultipartParseError:
            raise BadRequest("The multipart body is malformed.") from None
        if not self.collector.ended:
            raise BadRequest("The multipart body ended before its closing boundary.")
        return FormData(self.collector.items)


def parse_multipart(body: bytes | Iterable[bytes], content_type: str, limits: MultipartLimits) -> FormData:
    """Parse a body already in memory."""
    feeder = _Feeder(content_type, limits)
    try:
        for chunk in [body] if isinstance(body, bytes) else body:
            feeder.feed(chunk)
        return feeder.finish()
    except BaseException:
        feeder.collector.close_files()
        raise


async def parse_multipart_stream(chunks: AsyncIterable[bytes], content_type: str, limits: MultipartLimits) -> FormData:
    """Parse a body as it arrives."""
    feeder = _Feeder(content_type, limits)
    try:
        async for chunk in chunks:
            feeder.feed(chunk)
        return feeder.finish()
    except BaseException:
        feeder.collector.close_files()
        raise


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")
