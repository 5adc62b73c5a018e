"""Integrations with outside systems. Each needs its extra (``pip install 'cello[redis]'``)."""

from .redis import Redis

__all__ = ["Redis"]
