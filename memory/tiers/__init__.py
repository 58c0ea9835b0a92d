"""Storage tiers of the memory coordinator: hot caches, the warm record, the cold archive."""

from memory.tiers.archive import ArchiveTier
from memory.tiers.base import HotTier, WarmTier, id_floor, strip_vector
from memory.tiers.hot import LruHotTier
from memory.tiers.memory_warm import InMemoryWarmTier
from memory.tiers.near_cache import NearCache
from memory.tiers.postgres import PostgresWarmTier
from memory.tiers.redis_hot import RedisHotTier

__all__ = [
    "ArchiveTier",
    "HotTier",
    "InMemoryWarmTier",
    "LruHotTier",
    "NearCache",
    "PostgresWarmTier",
    "RedisHotTier",
    "WarmTier",
    "id_floor",
    "strip_vector",
]
