"""mlbus people add | list | revoke: people as broker principals with Ed25519 signing keys (admin only)."""
from __future__ import annotations

import argparse
import base64
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.bus.access import ROLES, plan_acls
from services.bus.acl_admin import AclAdmin, apply_access
from services.bus.context import Bus
from services.bus.credentials import ADMIN, credentials_file, read_properties
from services.bus.envelope import Event
from services.bus.identity import Identity, read_identities
from services.bus.projections.identities import LOG_SIGNER_ROLE
from services.bus.publish import Publisher
from services.bus.settings import ConfigError
from services.bus.signing import key_id

from .output import info, print_json, print_table


def register(commands: argparse._SubParsersAction) -> None:
    people = commands.add_parser("people", help="people: broker credentials, signing keys and roles (admin)")
    sub = people.add_subparsers(dest="people_command", required=True)
    add = sub.add_parser("add", help="make a person (or a new key for one) and write their identity file")
    add.add_argument("name")
    add.add_argument("--role", action="append", required=True, choices=ROLES,
                     help="a role (repeatable): " + ", ".join(ROLES))
    add.add_argument("--out", type=Path, default=None,
                     help="where to write the identity file (default MLBUS_VAR/identities/NAME.json)")
    add.set_defaults(run=add_command)
    listing = sub.add_parser("list", help="every person's keys, roles and validity")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=list_command)
    revoke = sub.add_parser("revoke", help="revoke a person's keys (one with --key): they sign nothing after now")
    revoke.add_argument("name")
    revoke.add_argument("--key", default=None, help="only this key id")
    revoke.set_defaults(run=revoke_command)


def as_admin(bus: Bus) -> Bus:
    """The same bus over the broker admin's credentials (people and ACLs are the admin's business)."""
    return Bus(replace(bus.settings, principal=ADMIN), bus.catalogue, bus.schemas)


def add_command(bus: Bus, args: argparse.Namespace) -> int:
    admin_bus = as_admin(bus)
    acl_admin = AclAdmin(admin_bus)
    path = args.out or bus.settings.var_dir / "identities" / f"{args.name}.json"
    if path.exists():
        raise ConfigError(f"{path} exists: give --out for another identity file (a second key) of {args.name}")
    principal = bus.catalogue.namespace + args.name
    acl_admin.ensure_principal(principal)
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    declared = {"key_id": key_id(public), "name": args.name, "principal": principal, "roles": sorted(set(args.role)),
                "public_key": base64.b64encode(public).decode(), "created_at": datetime.now(timezone.utc),
                "revoked_at": None, "declared_by": ADMIN}
    publish_identity(admin_bus, declared)
    people = read_identities(admin_bus).people()
    apply_access(admin_bus, people, principals=False)
    kafka = read_properties(credentials_file(admin_bus.settings, principal))
    kafka.pop("bootstrap.servers", None)
    Identity(args.name, principal, declared["key_id"], key.private_bytes_raw(), tuple(declared["roles"]),
             kafka).save(path)
    info(f"{args.name}: key {declared['key_id']}, roles {', '.join(declared['roles'])}; identity file {path} "
         f"(keep it private: MLBUS_IDENTITY={path})")
    print(path)
    return 0


def publish_identity(admin_bus: Bus, declared: dict) -> None:
    publisher = Publisher(admin_bus, "cli:admin")
    publisher.publish(Event("mlbus.IdentityDeclared", declared, key=declared["key_id"],
                            id=f"{declared['key_id']}-{'revoked' if declared['revoked_at'] else 'created'}",
                            subject=declared["name"]))
    publisher.flush()


def list_command(bus: Bus, args: argparse.Namespace) -> int:
    keys = sorted(read_identities(bus).keys.values(), key=lambda k: (k.name, k.created_at_ms))
    rows = [{"name": k.name, "key_id": k.key_id, "roles": list(k.roles), "principal": k.principal,
             "created_at": _iso(k.created_at_ms), "revoked_at": _iso(k.revoked_at_ms)} for k in keys]
    if args.json:
        print_json(rows)
    else:
        print_table(["name", "key", "roles", "created", "revoked"],
                    [[r["name"], r["key_id"][:16], ",".join(r["roles"]), r["created_at"], r["revoked_at"] or "-"]
                     for r in rows])
    return 0


def revoke_command(bus: Bus, args: argparse.Namespace) -> int:
    admin_bus = as_admin(bus)
    known = read_identities(admin_bus)
    active = [k for k in known.keys.values() if k.name == args.name and k.revoked_at_ms is None
              and args.key in (None, k.key_id)]
    if not active:
        raise ConfigError(f"{args.name} has no active key{' ' + args.key if args.key else ''}")
    now = datetime.now(timezone.utc)
    for key in active:
        publish_identity(admin_bus, {"key_id": key.key_id, "name": key.name, "principal": key.principal,
                                     "roles": list(key.roles), "public_key": base64.b64encode(key.public_key).decode(),
                                     "created_at": _time(key.created_at_ms), "revoked_at": now, "declared_by": ADMIN})
    remaining = read_identities(admin_bus).people()
    principal = active[0].principal
    if principal not in remaining and LOG_SIGNER_ROLE not in active[0].roles:   # no key left: forget the person
        acl_admin = AclAdmin(admin_bus)
        acl_admin.delete(plan_acls(admin_bus.catalogue, {principal: list(active[0].roles)})
                         - plan_acls(admin_bus.catalogue, {}))
        acl_admin.forget_principal(principal)
    info(f"revoked {len(active)} key(s) of {args.name}")
    return 0


def _iso(millis: int | None) -> str | None:
    return None if millis is None else _time(millis).isoformat()


def _time(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, timezone.utc)
