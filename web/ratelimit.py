"""Token-bucket rate limits, per API key and per client address.

In-process buckets by default; when the broker is Redis (``settings.broker_url`` starts with
``redis://``) the buckets live in Redis, so every web process behind a proxy shares them. A Redis
that cannot be reached lets requests through (logged): a limiter outage must not take the API down.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0


class MemoryLimiter:
    """Buckets in this process: ``rate_per_s`` tokens per second up to ``burst``."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def hit(self, key: str, rate_per_s: float, burst: int) -> Decision:
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate_per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return Decision(True)
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > 100_000:  # forget idle clients rather than grow without bound
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 3600}
            return Decision(False, (1.0 - tokens) / rate_per_s)


# The same bucket as MemoryLimiter, atomically in Redis: KEYS[1], ARGV = rate/s, burst, now (s).
_BUCKET_LUA = """
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 't', tokens, 'ts', now)
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return {allowed, tostring(tokens)}
"""


class RedisLimiter:
    """Buckets shared by every web process through Redis."""

    def __init__(self, url: str, prefix: str = "veriframe:ratelimit:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._script = self._redis.register_script(_BUCKET_LUA)
        self._prefix = prefix

    def hit(self, key: str, rate_per_s: float, burst: int) -> Decision:
        import redis

        try:
            allowed, tokens = self._script(keys=[self._prefix + key], args=[rate_per_s, burst, time.time()])
        except redis.RedisError as exc:
            log.warning("rate limiter: Redis unreachable, letting the request through: %s", exc)
            return Decision(True)
        if int(allowed):
            return Decision(True)
        return Decision(False, (1.0 - float(tokens)) / rate_per_s)


def limiter_for(broker_url: str) -> MemoryLimiter | RedisLimiter:
    if broker_url.startswith(("redis://", "rediss://")):
        return RedisLimiter(broker_url)
    return MemoryLimiter()
