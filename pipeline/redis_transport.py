"""kombu's Redis transport, with the crashes it has after losing Redis turned into connection errors.

When Redis goes away, Celery closes the dead connection and opens a new one; the channel of the old
one is left with no transport under it (its ``connection``, or that transport's ``client``, is
None). kombu still uses that channel twice, and both times it fails with ``AttributeError``
instead of a connection error, which Celery calls unrecoverable: the whole worker exits (seen with
kombu 5.7 and redis-py 8.1, in 3 of 41 runs of 50 jobs with Redis restarted four times):

- on the way out, the channel gives its unacknowledged messages back to their queue;
- a task that was running when Redis went away finishes after the reconnect, and its message is
  acknowledged on the old channel.

Here the first is skipped with a warning, and anything else that needs the missing transport
raises ``redis.exceptions.ConnectionError``, which Celery handles (an acknowledgement that fails
is logged and dropped). Nothing is lost: the messages stay in Redis's unacked set, which returns
them to the queue after the visibility timeout; the worker's job sweep re-sends queued jobs sooner
(``job_resend_after_s``), and a message of a finished job does nothing when it comes back. Celery
uses this transport for ``redis://`` and ``rediss://`` brokers (``broker_transport`` in
:func:`pipeline.celery_app.celery_config`).
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)


def _transport_gone(channel: redis.Channel) -> bool:
    return channel.connection is None or channel.connection.client is None


class QoS(redis.QoS):
    def restore_unacked(self, client: Any = None) -> None:
        if client is None and _transport_gone(self.channel):
            log.warning("broker connection is gone: %d unacknowledged message(s) stay in Redis, which restores "
                        "them after the visibility timeout", len(self._delivered))
            self._delivered.clear()
            return
        super().restore_unacked(client)


class Channel(redis.Channel):
    QoS = QoS

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if _transport_gone(self):
            raise RedisConnectionError("the broker connection of this channel is closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(redis.Transport):
    Channel = Channel
