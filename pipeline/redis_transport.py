"""kombu's Redis transport with one crash on broker loss turned into a warning.

When Redis goes away while a worker holds unacknowledged messages, Celery closes the dead
connection, and kombu's Redis channel tries to give those messages back to their queue on the
way out. If the transport under the channel was already torn down (its ``client`` is None, which
happens after quick successive Redis restarts), kombu raises ``AttributeError`` instead of a
connection error; Celery calls that unrecoverable and the whole worker exits (seen with kombu
5.7 and redis-py 8.1: two Redis restarts a second apart).

Here the give-back is skipped with a warning when there is no transport left to give back
through. Nothing is lost: the messages stay in Redis's unacked set, which returns them to the
queue after the visibility timeout, and the worker's job sweep re-sends their jobs sooner
(``job_resend_after_s``). Celery uses this transport for ``redis://`` and ``rediss://`` brokers
(``broker_transport`` in :func:`pipeline.celery_app.celery_config`).
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis

log = logging.getLogger(__name__)


class QoS(redis.QoS):
    def restore_unacked(self, client: Any = None) -> None:
        if client is None and self.channel.connection.client is None:
            log.warning("broker connection is gone: %d unacknowledged message(s) stay in Redis, which restores "
                        "them after the visibility timeout", len(self._delivered))
            self._delivered.clear()
            return
        super().restore_unacked(client)


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
