"""Typed data in and out: codecs per type (msgspec, pydantic), validation errors in one shape."""

from .codecs import Codec, codec_for, is_model, strip_annotated, uses_pydantic
from .errors import ErrorItem, ValidationFailed

__all__ = ["Codec", "ErrorItem", "ValidationFailed", "codec_for", "is_model", "strip_annotated", "uses_pydantic"]
