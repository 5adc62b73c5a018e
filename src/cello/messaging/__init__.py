"""Messaging: ``Broker(url)`` with subscribers that live inside the app and take the same parameters as routes.

Adapters by URL scheme: ``memory://`` (in the process; the default, and what the test client uses),
``redis://`` (Redis Streams), ``amqp://`` (RabbitMQ), ``nats://`` (NATS JetStream), ``kafka://`` and ``sqs://``, each
in a module of its own, whose client library comes with the extra of the same name. See ``cello.messaging.broker``
for subscribing, publishing and the delivery guarantees, and ``cello.messaging.transport`` for what an adapter
promises.
"""

from .broker import Broker, BrokerUnavailable, RequestFailed
from .message import Message
from .subscriber import Subscriber, exponential

__all__ = ["Broker", "BrokerUnavailable", "Message", "RequestFailed", "Subscriber", "exponential"]
