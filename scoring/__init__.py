"""The pure domain core of the engagement scorer.

Parse an interaction event against a scoring model, apply it to a customer's state,
and get back the new state plus every tier and segment change, each with a
deterministic id. No I/O (except reading a model file), no clocks, no services.

>>> import scoring
>>> model = scoring.load_default_model()
>>> raw = b'{"event_id": "e1", "customer_id": "c-1", "type": "webinar_attended", "timestamp": 0}'
>>> event = scoring.parse_event(raw, model, now_ms=0)
>>> result = scoring.apply(None, event, model)
>>> result.status, result.state.tier_name(model), scoring.values_at(result.state, model, 0).score
('applied', 'cold', 10.0)
>>> scoring.decode_state(scoring.encode_state(result.state), model) == result.state
True
"""

from scoring.apply import Applied, NpsResponse, apply
from scoring.changes import Change, change_id
from scoring.codec.explain import decode_explanation, encode_explanation
from scoring.codec.state import decode_state, encode_state
from scoring.crossing import advance, next_crossing, quiet_until
from scoring.decay import ExpSum, decay_factor
from scoring.errors import (
    REASONS,
    InvalidEvent,
    InvalidModel,
    InvalidState,
    ScoringError,
    UnknownFormat,
)
from scoring.events import Event, parse_event, parse_timestamp, validate_customer_id
from scoring.explain import Explanation, contributions_at, explain_add, recent_at
from scoring.model import (
    EventType,
    Model,
    default_model_path,
    load_default_model,
    load_model,
    parse_model,
    parse_model_text,
)
from scoring.nps import NpsCounts, category, nps
from scoring.rules import Condition, SegmentRule
from scoring.state import (
    CustomerState,
    Values,
    fingerprint,
    new_state,
    segment_names,
    tier_name,
    values_at,
)
from scoring.tiers import Tier

__all__ = [
    "REASONS",
    "Applied",
    "Change",
    "Condition",
    "CustomerState",
    "Event",
    "EventType",
    "ExpSum",
    "Explanation",
    "InvalidEvent",
    "InvalidModel",
    "InvalidState",
    "Model",
    "NpsCounts",
    "NpsResponse",
    "ScoringError",
    "SegmentRule",
    "Tier",
    "UnknownFormat",
    "Values",
    "advance",
    "apply",
    "category",
    "change_id",
    "contributions_at",
    "decay_factor",
    "decode_explanation",
    "decode_state",
    "default_model_path",
    "encode_explanation",
    "encode_state",
    "explain_add",
    "fingerprint",
    "load_default_model",
    "load_model",
    "new_state",
    "next_crossing",
    "nps",
    "parse_event",
    "parse_model",
    "parse_model_text",
    "parse_timestamp",
    "quiet_until",
    "recent_at",
    "segment_names",
    "tier_name",
    "validate_customer_id",
    "values_at",
]
