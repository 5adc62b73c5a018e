"""Per-stream encryption of event data, for crypto-shredding: ``EventStore(db, encrypt=lambda stream: ...)``
encrypts the data of the chosen streams' events with a key of the stream's own (AES-256-GCM, the event's id and
stream bound in as associated data), kept in the store's ``<table>_keys`` table. ``await store.shred(stream_id)``
deletes the key: the stream's events stay, with their types and metadata, but their data can no longer be read
— ``data`` is None — wherever they were copied to. Needs the ``cryptography`` package (the ``patterns`` extra).
"""

from __future__ import annotations

import base64
import os

from ..http.exceptions import ConfigurationError

__all__ = ["StreamCipher"]

ENCRYPTED_KEY = "encrypted"  # metadata: the event's data is encrypted with its stream's key


class StreamCipher:
    """Encrypts and decrypts event data with per-stream keys."""

    def __init__(self) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ConfigurationError("encrypted streams need cryptography: pip install 'cello[patterns]'") from None
        self._aead = AESGCM

    @staticmethod
    def new_key() -> str:
        return base64.b64encode(os.urandom(32)).decode()

    def encrypt(self, key: str, stream_id: str, event_id: str, data: bytes) -> str:
        nonce = os.urandom(12)
        sealed = self._aead(base64.b64decode(key)).encrypt(nonce, data, _bound(stream_id, event_id))
        return base64.b64encode(nonce + sealed).decode()

    def decrypt(self, key: str, stream_id: str, event_id: str, text: str) -> bytes:
        raw = base64.b64decode(text)
        return bytes(self._aead(base64.b64decode(key)).decrypt(raw[:12], raw[12:], _bound(stream_id, event_id)))


def _bound(stream_id: str, event_id: str) -> bytes:
    """What ties a ciphertext to its event: moved to another event or stream, it does not decrypt."""
    return f"{stream_id}\x00{event_id}".encode()
