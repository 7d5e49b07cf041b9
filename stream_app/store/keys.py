"""Every Redis key the scorer uses, built in one place.

Keys start with ``<prefix>:<model name>:`` so two models (or two deployments) can
share a Redis. The part inside ``{...}`` is the Redis Cluster hash tag: all keys
of one customer share a slot, so per-customer scripts are cluster-safe.
Customer ids are escaped (``%``, ``{``, ``}``) so that no input can move a key
out of its slot or forge another customer's key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot


def escape(part: str) -> str:
    """Escape a free-form id for use inside a key.

    >>> escape("a{b}%c")
    'a%7Bb%7D%25c'
    """
    return part.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def digest(secret: bytes, customer_id: str) -> str:
    """The keyed hash that names an erased customer in the suppression list (hex
    HMAC-SHA256 of its id under ``secret``).

    >>> digest(b"k", "c-1") == digest(b"k", "c-1") != digest(b"other", "c-1")
    True
    """
    return hmac.new(secret, customer_id.encode(), hashlib.sha256).hexdigest()


def glob_escape(text: str) -> str:
    r"""``text`` as a literal inside a Redis ``MATCH`` pattern.

    >>> glob_escape("es:a*b")
    'es:a\\*b'
    """
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder for one model under one prefix."""

    prefix: str
    #: The model's namespace: its name for the first model of a deployment, else
    #: ``<name>@<slot id>`` (see :class:`RegistryKeys`).
    model: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{escape(self.model)}"

    # state:{customer} -- string: "<version>.<write id> " then binary: format byte 2,
    # source marks, state length, encoded CustomerState, encoded Explanation (may be
    # empty) (see stream_app/store/records.py)
    def state(self, customer_id: str) -> str:
        return f"{self.base}:state:{{{escape(customer_id)}}}"

    def state_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern of every customer record of this model."""
        return f"{glob_escape(self.base)}:state:*"

    def all_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern of every key of this model (to delete a retired one)."""
        return f"{glob_escape(self.base)}:*"

    def customer_of(self, state_key: str) -> str:
        """The customer id of a key made by :meth:`state`.

        >>> keys = Keys("es", "default")
        >>> keys.customer_of(keys.state("a{b}%c"))
        'a{b}%c'
        """
        inner = state_key[len(self.base) + len(":state:{") : -1]
        return inner.replace("%7B", "{").replace("%7D", "}").replace("%25", "%")

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

    # suppression:{<tag>} -- hash: the suppression list of one Redis Cluster slot (on a
    # single Redis too). Field: an erased customer, named by the hex HMAC-SHA256 of its id
    # under ENGAGEMENT_SUPPRESSION_SECRET (never by the id); value: when its suppression
    # ends (ms). The tag (slot_tag) puts it in the slot of the customers it names, so the
    # fenced write (lua/cas_write.lua) can refuse to create an erased customer's record in
    # the same script. lua/suppress.lua adds entries and prunes the expired ones; the hash
    # expires when its last entry does.
    def suppression(self, customer_id: str) -> str:
        tag = slot_tag(slot_of(self.state(customer_id)))
        return f"{self.base}:suppression:{{{tag}}}"

    # suppressed:{<digest>} -- string "1" with a TTL: the suppression list of earlier
    # releases, one key per erased customer (by the same keyed hash). Read, never written:
    # its keys expire by themselves within ENGAGEMENT_SUPPRESSION_DAYS.
    def suppressed(self, digest: str) -> str:
        return f"{self.base}:suppressed:{{{digest}}}"


@dataclass(frozen=True, slots=True)
class RegistryKeys:
    """Keys of one deployment's model registry (``<prefix>:{models}:...``).

    Every one carries the hash tag ``{models}``, so on Redis Cluster they share a slot and
    one script can change several of them atomically. A model's own data lives under
    :class:`Keys` with the model's namespace (see :mod:`stream_app.models.registry`).
    """

    prefix: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{models}}"

    # registry -- hash: rev (bumped at every change), epoch (bumped at every promotion or
    # rollback), active (slot id of the model in force), shadow (slot id of the other model
    # scored, "" for none), switched_at (ms of the last promotion or rollback), next (the
    # last slot id given), partitions (the input topic's partition count)
    def registry(self) -> str:
        return f"{self.base}:registry"

    # slot:<id> -- hash: name, version, sha256, toml (the model file's text), namespace
    # (the <model> part of that model's data keys), mode (seed, replay or from-current),
    # created_at (ms), origin (where the text came from)
    def slot(self, slot_id: int) -> str:
        return f"{self.base}:slot:{slot_id}"

    # cutover -- hash: input partition -> the epoch its customers were switched to
    def cutover(self) -> str:
        return f"{self.base}:cutover"

    # switched:<epoch> -- hash: input partition -> model changes published by its switch
    # (counted at least once: a retried switch counts its changes again)
    def switched(self, epoch: int) -> str:
        return f"{self.base}:switched:{epoch}"

    # engaged:<slot> -- hash: input partition -> "1" once the worker group scores that
    # shadow model on it together with the model in force
    def engaged(self, slot_id: int) -> str:
        return f"{self.base}:engaged:{slot_id}"

    # progress:<slot> -- hash: "<topic>:<partition>" -> the last offset the shadow's replay
    # (its own consumer group) processed there
    def progress(self, slot_id: int) -> str:
        return f"{self.base}:progress:{slot_id}"


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
