"""Redis transport: settings, clients, broadcast (pub/sub) and the durable Streams runtime.

Example:
    >>> from swarm.redis import RedisSettings
    >>> RedisSettings.from_dsn("redis://127.0.0.1:6379/0").port
    6379
"""

from swarm.redis.broadcast import RedisBroadcaster, RedisSubscription
from swarm.redis.connections import AnyRedis, RedisClients, make_retry, node_client
from swarm.redis.ledger import RedisLedger
from swarm.redis.runtime import RedisRuntime
from swarm.redis.settings import RedisSettings

__all__ = [
    "AnyRedis",
    "RedisBroadcaster",
    "RedisClients",
    "RedisLedger",
    "RedisRuntime",
    "RedisSettings",
    "RedisSubscription",
    "make_retry",
    "node_client",
]
