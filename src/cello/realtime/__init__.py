"""Real-time: WebSocket connections (async and blocking styles), Server-Sent Events, and a broadcast hub with
WebSocket rooms that reaches every worker and machine through the stores."""

from .broadcast import Broadcast
from .sse import EventSourceResponse, ServerSentEvent
from .websocket import Message, SyncWebSocket, WebSocket, WebSocketDisconnect

__all__ = [
    "Broadcast",
    "EventSourceResponse",
    "Message",
    "ServerSentEvent",
    "SyncWebSocket",
    "WebSocket",
    "WebSocketDisconnect",
]
