"""Topic names: the only place they are spelled. Every name hangs off Settings.prefix.

Keys decide partitions, and the streams workers rely on them: everything about one namespace (its entity
commands, invocations, assigned activations, completions, fires) is keyed by the (root) namespace,
so it lands on one partition number in every topic and so on one Faust worker, with the tables it changes.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_INVOKERS = 16


@dataclass(frozen=True)
class Topics:
    prefix: str

    def _t(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    @property
    def commands(self) -> str:  # entity writes asked for by the API, keyed by root namespace
        return self._t("commands")

    @property
    def entities(self) -> str:  # decided entity changes (the entity log)
        return self._t("entities")

    @property
    def subjects(self) -> str:  # subject/key lifecycle, keyed by subject uuid
        return self._t("subjects")

    @property
    def access(self) -> str:  # one event per API call (audit trail)
        return self._t("access")

    @property
    def invocations(self) -> str:  # activation requests from the API, keyed by namespace (so are the next three)
        return self._t("invocations")

    @property
    def completions(self) -> str:  # finished (or rejected) activations, keyed by namespace
        return self._t("completions")

    @property
    def health(self) -> str:  # invoker pings, keyed by invoker (every worker reads all of it)
        return self._t("health")

    @property
    def progress(self) -> str:  # projector offsets, for read-your-writes
        return self._t("progress")

    @property
    def deadletter(self) -> str:
        return self._t("deadletter")

    @property
    def compositions(self) -> str:  # sequences/conductors fired by rules, run by one API process (group)
        return self._t("compositions")

    @property
    def fires(self) -> str:  # TriggerFired, keyed by namespace (rules agent)
        return self._t("fires")

    @property
    def feed_requests(self) -> str:  # feed action invocations (lifecycle events), keyed by trigger
        return self._t("feedreqs")

    @property
    def feed_state(self) -> str:  # compacted: FeedChanged/FeedProgress by trigger, the feed service's state
        return self._t("feedstate")

    @property
    def usermetrics(self) -> str:  # compacted: user-events metric state per completions partition, with its offset
        return self._t("usermetrics")

    @property
    def replays(self) -> str:  # ReplayProgress of `streamwhisk replay` runs, keyed by generation (operational)
        return self._t("replays")

    def invoker(self, n: int) -> str:  # ActivationAssigned for invoker n, keyed by namespace
        return self._t(f"invoker{n}")

    def assignments(self) -> list[str]:
        """Every invoker's assignment topic (made up front, so readers can assign them all)."""
        return [self.invoker(i) for i in range(MAX_INVOKERS)]

    def event_log(self) -> list[str]:
        """Topics that together are the source of truth (replay reads these)."""
        return [self.subjects, self.entities, self.completions, self.access]
