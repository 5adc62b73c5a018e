"""Typed data in and out: codecs per type (``codecs``: msgspec, pydantic) and validation errors in one shape
(``errors``). The submodules are imported directly, so the errors never pull in the codecs' libraries."""
