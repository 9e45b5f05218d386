"""What people give the CLI: YAML files (model specs, policies) and events sent in their name."""
from __future__ import annotations

from pathlib import Path

import yaml

from services.bus.context import Bus
from services.bus.envelope import Event, new_id
from services.bus.errors import BadInput
from services.bus.publish import Publisher


def load_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise BadInput(f"cannot read {path}: {error}") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path} must be a YAML mapping of fields (see scripts/examples/)")
    return raw


def send(bus: Bus, actor: str, record: str, value: dict, key: str, event_id: str | None = None,
         subject: str | None = None) -> str:
    """Publish one event on behalf of a person at the CLI and wait for the broker's acknowledgement."""
    event_id = event_id or new_id()
    publisher = Publisher(bus, actor)
    publisher.publish(Event(record, value, key=key, id=event_id, subject=subject or key))
    publisher.flush()
    return event_id
