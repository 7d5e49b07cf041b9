"""At a worker's start: which model is in force, and can it read the state it will meet.

``ENGAGEMENT_MODEL_FILE`` seeds an empty deployment. Once a model is registered, the
registry decides: a worker whose file is another model logs that and scores with the
model in force, so every worker of a deployment scores with the same one, during a
rolling restart too. A model that cannot read the state stored under its namespace
(written by a model of another layout under the same name) is refused at start, with
the commands that change models, instead of failing every batch forever.
"""

from __future__ import annotations

import logging
from typing import cast

from scoring import (
    InvalidState,
    Model,
    UnknownFormat,
    decode_state,
    load_model,
    parse_model_text,
)
from stream_app.errors import StreamAppError
from stream_app.models.registry import ModelRegistry, RegistryState, text_hash
from stream_app.settings import Settings
from stream_app.store.keys import Keys, RegistryKeys
from stream_app.store.state import RedisClient, StateStore

log = logging.getLogger("stream_app.models")

#: How many stored records a start-up check decodes.
SAMPLE = 50

CHANGE_MODELS = (
    "to change the model of a running deployment, use `engagement-scorer model plan NEW.toml`, "
    "`engagement-scorer model shadow NEW.toml` and `engagement-scorer model promote` "
    '(docs/operations.md, "Changing the scoring model")'
)


class ModelRefused(StreamAppError):
    """The model cannot read the state stored for it."""


async def unreadable(client: RedisClient, keys: Keys, model: Model) -> str | None:
    """Why ``model`` cannot read the records under ``keys`` (None: the ones sampled read).

    Only a state of the current format that does not fit the model counts (another
    layout: a tier, segment or event type the model does not have). A record that is
    damaged (it does not unpack, or its state is not of the current format) is the
    batch's to dead-letter, not a reason to refuse the model.
    """
    found: list[str] = []
    async for key in client.scan_iter(match=keys.state_pattern(), count=500):
        found.append(keys.customer_of(cast(bytes, key).decode()))
        if len(found) >= SAMPLE:
            break
    if not found:
        return None
    records = await StateStore(client, keys).load(found)  # (one MGET per slot on a cluster)
    for cid, record in records.items():
        if record.state is None or record.fault is not None:
            continue  # damaged: the batch's to dead-letter
        try:
            decode_state(record.state, model)
        except UnknownFormat:
            continue  # damaged, or written by an older release
        except InvalidState as exc:
            return f"{keys.state(cid)}: {exc}"
    return None


async def model_in_force(
    client: RedisClient, prefix: str, *, file_text: str, origin: str, partitions: int
) -> RegistryState:
    """The registry of this deployment, seeded with the file's model if it was empty.

    Raises :class:`ModelRefused` when the model in force (or the file's, on an empty
    deployment) cannot read the state stored under its namespace.
    """
    registry = ModelRegistry(client, RegistryKeys(prefix))
    state = await registry.read()
    if state is None:
        model = parse_model_text(file_text, origin)
        why = await unreadable(client, Keys(prefix, model.name), model)
        if why is not None:
            raise ModelRefused(
                f"model {model.name} v{model.version} ({origin}) cannot read the state stored "
                f"under {prefix}:{model.name}: ({why}): it was written by a model of another "
                f"layout with the same name. Start with the model that wrote it; {CHANGE_MODELS}"
            )
        state = await registry.seed(file_text, origin=origin, partitions=partitions)
        if state.active.sha256 == text_hash(file_text):
            log.info("registered %s as the model in force", state.active.label)
    active = state.active
    why = await unreadable(client, active.keys(prefix), active.model)
    if why is not None:
        raise ModelRefused(
            f"the model in force, {active.label}, cannot read the state stored under "
            f"{prefix}:{active.namespace}: ({why}); {CHANGE_MODELS}"
        )
    if active.sha256 != text_hash(file_text):
        log.warning(
            "ENGAGEMENT_MODEL_FILE (%s, sha256 %s) is not the model in force: scoring with "
            "%s (sha256 %s) as every worker of this deployment does; %s",
            origin,
            text_hash(file_text)[:12],
            active.label,
            active.sha256[:12],
            CHANGE_MODELS,
        )
    return state


async def in_force(settings: Settings, client: RedisClient) -> tuple[Model, Keys, str]:
    """The model in force, its keys and a label (the file's model on an empty deployment)."""
    state = await ModelRegistry(client, RegistryKeys(settings.key_prefix)).read()
    if state is None:
        model = load_model(settings.model_path)
        label = f"{model.name} v{model.version} (ENGAGEMENT_MODEL_FILE; not registered yet)"
        return model, Keys(settings.key_prefix, model.name), label
    slot = state.active
    return slot.model, slot.keys(settings.key_prefix), slot.label
