"""Every Redis key the scorer uses, built in one place.

Keys start with ``<prefix>:<model name>:`` so two models (or two deployments) can
share a Redis. The part inside ``{...}`` is the Redis Cluster hash tag: all keys
of one customer share a slot, so per-customer scripts are cluster-safe.
Customer ids are escaped (``%``, ``{``, ``}``) so that no input can move a key
out of its slot or forge another customer's key.
"""

from __future__ import annotations

from dataclasses import dataclass


def escape(part: str) -> str:
    """Escape a free-form id for use inside a key.

    >>> escape("a{b}%c")
    'a%7Bb%7D%25c'
    """
    return part.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder for one model under one prefix."""

    prefix: str
    model: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{escape(self.model)}"

    # state:{customer} -- string: "<version> <source marks> <state length> <encoded
    # CustomerState><encoded Explanation, may be empty>" (see store.py)
    def state(self, customer_id: str) -> str:
        return f"{self.base}:state:{{{escape(customer_id)}}}"

    # nps:{topic:partition} -- hash: "<day>|<tier or *>|<category>" -> count,
    # plus "_wm", the highest source offset already counted (idempotent replays)
    def nps_counts(self, topic: str, partition: int) -> str:
        return f"{self.base}:nps:{{{topic}:{partition}}}"

    # nps-sources -- set of "<topic>:<partition>" that have NPS counters
    def nps_sources(self) -> str:
        return f"{self.base}:nps-sources"

    # due:{partition} -- sorted set: customer id -> next decay crossing (ms)
    def due(self, partition: int) -> str:
        return f"{self.base}:due:{{p{partition}}}"

    # tier:<name> -- sorted set, all scores 0: the customers in that tier now (lex-paginated)
    def tier_members(self, tier: str) -> str:
        return f"{self.base}:tier:{escape(tier)}"

    # segment:<name> -- sorted set, all scores 0: the customers in that rule segment now
    def segment_members(self, segment: str) -> str:
        return f"{self.base}:segment:{escape(segment)}"

    # tier-moves:<name>:<in|out> -- sorted set: change id -> occurred_at ms (last 2 days)
    def tier_moves(self, tier: str, direction: str) -> str:
        return f"{self.base}:tier-moves:{escape(tier)}:{direction}"
