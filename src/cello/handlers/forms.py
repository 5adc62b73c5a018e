"""Form and file parameters: parse the form once per request, then fill each ``Form()``/``File()`` slot.

A route with file parameters streams its body into the multipart parser instead of reading it first, so an upload
goes to disk as it arrives; its size bound is the route's ``MultipartLimits.max_size`` unless ``body_limit`` says
otherwise.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..dto.codecs import codec_for, is_model, strip_annotated
from ..dto.errors import ValidationFailed
from ..http.request import Request
from ..http.uploads import MultipartLimits, UploadFile
from .plan import Slot, _missing, _optional_inner, _with_constraints, string_converter

if TYPE_CHECKING:
    from ..routing.router import Route

FormReader = Callable[[Request], Awaitable[dict[str, Any]]]


def form_reader(slots: list[Slot], route: Route) -> FormReader:
    fillers = [(slot.name, _filler(slot)) for slot in slots]
    if any(slot.source == "file" for slot in slots) and not route.stream:
        route.stream = True
        if route.body_limit is None:
            limits = route.meta.get("multipart") or MultipartLimits()
            route.body_limit = limits.max_size

    async def read(request: Request) -> dict[str, Any]:
        form = await request.form()
        kwargs: dict[str, Any] = {}
        errors: list[Any] | None = None
        for name, fill in fillers:
            try:
                kwargs[name] = await fill(form)
            except ValidationFailed as exc:
                errors = [*errors, *exc.errors] if errors else exc.errors
        if errors:
            raise ValidationFailed(errors)
        return kwargs

    return read


def _filler(slot: Slot) -> Callable[[Any], Awaitable[Any]]:
    key, default, required = slot.key, slot.default, slot.required
    location = (slot.source, key)
    target = _with_constraints(slot)
    inner = strip_annotated(_optional_inner(target))
    many = typing.get_origin(inner) is list

    if slot.source == "file":
        element = strip_annotated(typing.get_args(inner)[0]) if many else inner
        wants_bytes = element is bytes

        async def files(form: Any) -> Any:
            values = form.getlist(key)
            uploads = [value for value in values if isinstance(value, UploadFile) and not _no_file_chosen(value)]
            if not uploads:
                text = next((value for value in values if isinstance(value, str)), None)
                if text is not None:
                    raise ValidationFailed([_not_a_file(location, text)])
                if required:
                    raise ValidationFailed([_missing(location)])
                return default
            if wants_bytes:
                contents = [await upload.read() for upload in uploads]
                return contents if many else contents[0]
            return uploads if many else uploads[0]

        return files

    if is_model(inner):
        codec = codec_for(target)

        async def model(form: Any) -> Any:
            document: dict[str, Any] = {}
            for name in form:
                values = form.getlist(name)
                document[name] = values if len(values) > 1 else values[0]
            return codec.convert(document, ("form",), from_strings=True)

        return model

    if many:
        codec = codec_for(target)

        async def sequence(form: Any) -> Any:
            values = [value for value in form.getlist(key) if isinstance(value, str)]
            if not values:
                if required:
                    raise ValidationFailed([_missing(location)])
                return default
            return codec.convert(values, location, from_strings=True)

        return sequence

    convert = string_converter(target, location)

    async def scalar(form: Any) -> Any:
        value = form.get(key)
        if not isinstance(value, str):
            if required:
                raise ValidationFailed([_missing(location)])
            return default
        return convert(value)

    return scalar


def _no_file_chosen(upload: UploadFile) -> bool:
    """A browser's file input left empty: sent as a part with ``filename=""`` and no content."""
    return not upload.filename and upload.size == 0


def _not_a_file(location: tuple[str, ...], text: str) -> dict[str, Any]:
    return {"loc": list(location), "msg": "Input should be a file upload, not a text field", "type": "file_type",
            "input": text}  # fmt: skip
