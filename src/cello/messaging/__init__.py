"""Messaging: ``Broker(url)`` with subscribers that live inside the app and take the same parameters as routes.

Adapters by URL scheme: ``memory://`` (in the process; the default, and what the test client uses). See
``cello.messaging.broker`` for subscribing, publishing and the delivery guarantees.
"""

from .broker import Broker, BrokerUnavailable, RequestFailed
from .message import Message
from .subscriber import Subscriber, exponential

__all__ = ["Broker", "BrokerUnavailable", "Message", "RequestFailed", "Subscriber", "exponential"]
