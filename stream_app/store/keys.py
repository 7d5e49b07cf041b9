"""Every Redis key the scorer uses, built in one place.

Keys start with ``<prefix>:<model name>:`` so two models (or two deployments) can
share a Redis. The part inside ``{...}`` is the Redis Cluster hash tag: all keys
of one customer share a slot, so per-customer scripts are cluster-safe.
Customer ids are escaped (``%``, ``{``, ``}``) so that no input can move a key
out of its slot or forge another customer's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot


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
    # CustomerState><encoded Explanation, may be empty>" (see stream_app/store/records.py)
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

    # progress:{p<partition>} -- hash: durable event-time progress of one partition number,
    # each field only moving up (lua/progress_max.lua): "in" (input progress, ms) and
    # "in_offset" (last input offset processed there), "from:<p>" (latest watermark of
    # input p read from this by-customer partition) and "bc_offset" (last by-customer
    # offset processed). Same hash tag as the partition's due index.
    def progress(self, partition: int) -> str:
        return f"{self.base}:progress:{{p{partition}}}"

    # tier-counts -- hash: tier name -> customers in that tier now. Only cas_write.lua
    # writes it, together with the records it counts. On Redis Cluster there is one such
    # hash per slot, "tier-counts:{<tag>}", the tag putting it in its customers' slot.
    def tier_counts(self, slot: int | None = None) -> str:
        if slot is None:
            return f"{self.base}:tier-counts"
        return f"{self.base}:tier-counts:{{{slot_tag(slot)}}}"

    # segment:<name> -- sorted set, all scores 0: the customers in that rule segment now
    def segment_members(self, segment: str) -> str:
        return f"{self.base}:segment:{escape(segment)}"

    # redriven:{<event id>} -- string with a TTL (the topics' retention): the dead letter of
    # that event was re-produced to the input by `engagement-scorer redrive` (not again)
    def redriven(self, dedup_key: str) -> str:
        return f"{self.base}:redriven:{{{escape(dedup_key)}}}"

    # tier-moves:<name>:<in|out> -- sorted set: change id -> occurred_at ms (last 2 days)
    def tier_moves(self, tier: str, direction: str) -> str:
        return f"{self.base}:tier-moves:{escape(tier)}:{direction}"

    # alias:{customer} -- string: the customer this one was merged into, with a TTL
    # (ENGAGEMENT_ALIAS_DAYS): its later events go there. Written with the delete of the
    # customer's record (lua/merge_retire.lua), in the same slot.
    def alias(self, customer_id: str) -> str:
        return f"{self.base}:alias:{{{escape(customer_id)}}}"

    # aliases:{customer} -- sorted set: the customers merged into this one -> when their
    # alias expires (ms), so that erasing this customer also drops the aliases naming it
    def aliases_of(self, customer_id: str) -> str:
        return f"{self.base}:aliases:{{{escape(customer_id)}}}"

    # suppressed:{<digest>} -- string "1" with a TTL (ENGAGEMENT_SUPPRESSION_DAYS): an erased
    # customer, named by the hex HMAC-SHA256 of its id under ENGAGEMENT_SUPPRESSION_SECRET
    # (never by the id): its later events are dropped while the key lives
    def suppressed(self, digest: str) -> str:
        return f"{self.base}:suppressed:{{{digest}}}"


def slot_of(key: str) -> int:
    """The Redis Cluster slot of ``key`` (by its hash tag, if it has one)."""
    return key_slot(key.encode())


@cache
def _slot_tags() -> tuple[str, ...]:
    tags: dict[int, str] = {}
    n = 0
    while len(tags) < REDIS_CLUSTER_HASH_SLOTS:  # ~110,000 tries, ~0.1 s, once
        tags.setdefault(key_slot(str(n).encode()), str(n))
        n += 1
    return tuple(tags[slot] for slot in range(REDIS_CLUSTER_HASH_SLOTS))


def slot_tag(slot: int) -> str:
    """The smallest number whose decimal text, as a hash tag, maps to cluster slot ``slot``.

    >>> slot_tag(slot_of("es:default:state:{cust-1}")) == slot_tag(slot_of("{cust-1}"))
    True
    >>> slot_of("{" + slot_tag(1234) + "}")
    1234
    """
    return _slot_tags()[slot]
