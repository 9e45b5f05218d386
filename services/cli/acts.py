"""A person's acts at the CLI: signed with their identity file's key and sent over their own credentials."""
from __future__ import annotations

import argparse
import getpass

from services.bus.context import Bus
from services.bus.envelope import Event, new_id
from services.bus.errors import BadInput
from services.bus.identity import Identity
from services.bus.publish import Publisher
from services.bus.settings import ConfigError
from services.bus.signing import sign_act

NO_IDENTITY = ("this act is signed by a person: ask an admin for an identity file (`mlbus people add NAME --role "
               "ROLE`) and set MLBUS_IDENTITY=path/to/NAME.json (or keep it at ~/.config/mlbus/identity.json)")


def person(args: argparse.Namespace) -> Identity:
    """The identity the command acts as; a usage error without one."""
    if getattr(args, "identity", None) is None:
        raise ConfigError(NO_IDENTITY)
    return args.identity


def actor_name(args: argparse.Namespace) -> str:
    """Who is acting: the identity's person, else the local user (for unsigned records such as requests)."""
    identity = getattr(args, "identity", None)
    return identity.name if identity else getpass.getuser()


def signed(bus: Bus, identity: Identity, record: str, value: dict) -> dict:
    """The value as the service will decode it (an Avro round trip: defaults filled, times in milliseconds),
    signed by the person."""
    _, normalized = bus.schemas.decode(bus.schemas.encode(record, value))
    return sign_act(record, normalized, identity.name, identity.private_key)


def send(bus: Bus, identity: Identity | None, record: str, value: dict, key: str, event_id: str | None = None,
         subject: str | None = None) -> str:
    """Publish one event on behalf of a person (signed when there is an identity) and wait for the broker."""
    event_id = event_id or new_id()
    if identity is not None:
        value = signed(bus, identity, record, value)
    publisher = Publisher(bus, f"cli:{identity.name if identity else getpass.getuser()}")
    publisher.publish(Event(record, value, key=key, id=event_id, subject=subject or key))
    publisher.flush()
    return event_id


def artifact_of(bus: Bus, model: str, version: int) -> str:
    """The artifact an act about (model, version) binds: its trained record's sha256 (BadInput if none)."""
    from services.bus.projections.inventory import Inventory
    from services.bus.replay import fold_history
    found = Inventory()
    fold_history(bus, ("mlbus.ModelTrained",), found.apply)
    entry = found.version(model, version)
    if entry is None:
        raise BadInput(f"{model} v{version} is not a trained version")
    return entry.trained["artifact_sha256"]
