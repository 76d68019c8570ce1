"""Pure container-pool bookkeeping: which warm container serves an activation, what to evict, what to pause."""

from __future__ import annotations

from dataclasses import dataclass, field

# Warm containers are reused only for the same invoking namespace and action revision (as OpenWhisk does).
Key = tuple[str, str, str]  # (invoking namespace, action doc id, revision)


@dataclass
class Slot:
    name: str
    memory_mb: int
    kind: str
    key: Key | None = None  # None: a prewarmed stem cell, not yet initialised
    network: str | None = None  # None: the invoker's action network (stem cells have it)
    busy: bool = False
    paused: bool = False
    last_used: float = 0.0


@dataclass
class Pool:
    user_memory_mb: int
    slots: dict[str, Slot] = field(default_factory=dict)

    def used_mb(self) -> int:
        return sum(s.memory_mb for s in self.slots.values())

    def free_mb(self) -> int:
        return self.user_memory_mb - self.used_mb()

    def warm(self, key: Key) -> Slot | None:
        idle = [s for s in self.slots.values() if s.key == key and not s.busy]
        return max(idle, key=lambda s: s.last_used) if idle else None

    def stem_cell(self, kind: str, memory_mb: int) -> Slot | None:
        for s in self.slots.values():
            if s.key is None and not s.busy and s.kind == kind and s.memory_mb == memory_mb:
                return s
        return None

    def evictable(self, need_mb: int) -> list[Slot] | None:
        """Idle warm containers (least recently used first) whose removal frees need_mb; None if impossible."""
        if self.free_mb() >= need_mb:
            return []
        idle = sorted((s for s in self.slots.values() if not s.busy), key=lambda s: (s.key is None, s.last_used))
        out, free = [], self.free_mb()
        for s in idle:
            out.append(s)
            free += s.memory_mb
            if free >= need_mb:
                return out
        return None

    def idle_since(self, older_than: float) -> list[Slot]:
        return [s for s in self.slots.values() if not s.busy and s.key is not None and s.last_used < older_than]

    def warm_action_ids(self) -> list[str]:
        """One entry per initialised container (an action with three has three): the balancer counts them."""
        return sorted(s.key[1] for s in self.slots.values() if s.key is not None)
