"""mlbus people add | list | revoke: people as broker principals with Ed25519 signing keys (admin only)."""
from __future__ import annotations

import argparse
import base64
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.bus.access import ROLES, plan_acls, service_principals
from services.bus.acl_admin import AclAdmin, apply_access
from services.bus.context import Bus
from services.bus.credentials import ADMIN, credentials_file, read_properties
from services.bus.identity import (DEFAULT_IDENTITY, Identity, declare_key, passphrase, publish_declaration,
                                   read_enrolment, read_identities)
from services.bus.projections.identities import LOG_SIGNER_ROLE, NAME
from services.bus.service_keys import enrol_services
from services.bus.settings import ConfigError
from services.bus.signing import endorse, prove_possession

from .output import info, print_json, print_table


RESERVED = ("admin",)      # names no person may take, beside the services' and app's (service_principals)


def register(commands: argparse._SubParsersAction) -> None:
    people = commands.add_parser("people", help="people: signing keys made by their owners, broker credentials "
                                                "and roles")
    sub = people.add_subparsers(dest="people_command", required=True)
    keygen = sub.add_parser("keygen", help="(on your own machine) make your signing key and its enrolment request: "
                                           "the private key never leaves this machine")
    keygen.add_argument("name")
    keygen.add_argument("--out", type=Path, default=None,
                        help=f"your identity file (default MLBUS_IDENTITY, else {DEFAULT_IDENTITY})")
    keygen.add_argument("--encrypt", action="store_true",
                        help="encrypt the private key with a passphrase (MLBUS_PASSPHRASE, else asked)")
    keygen.set_defaults(run=keygen_command, offline=True)
    add = sub.add_parser("add", help="(admin) enrol a person's key from their enrolment request: broker "
                                     "credentials, roles, the key on the identities topic")
    add.add_argument("name")
    add.add_argument("--role", action="append", required=True, choices=ROLES,
                     help="a role (repeatable): " + ", ".join(ROLES))
    add.add_argument("--enrolment", type=Path, required=True,
                     help="the NAME.enrolment.json that `mlbus people keygen NAME` made (public key and proof)")
    add.add_argument("--endorsement", type=Path, action="append", default=[],
                     help="an admin's endorsement (`mlbus people endorse`): approver and admin need two")
    add.add_argument("--out", type=Path, default=None,
                     help="where to write the person's broker credentials (default "
                          "MLBUS_VAR/identities/NAME.credentials.json): hand it to them")
    add.set_defaults(run=add_command)
    credentials = sub.add_parser("credentials", help="(on your own machine) put the broker credentials the admin "
                                                     "handed you into your identity file")
    credentials.add_argument("file", type=Path, help="NAME.credentials.json from `mlbus people add`")
    credentials.add_argument("--identity", type=Path, default=None,
                             help=f"your identity file (default MLBUS_IDENTITY, else {DEFAULT_IDENTITY})")
    credentials.set_defaults(run=credentials_command, offline=True)
    endorsement = sub.add_parser("endorse", help="(an admin, on their own machine) sign a grant of approver or admin "
                                                 "that `mlbus people add` drafted: four-eyes on people")
    endorsement.add_argument("grant", type=Path, help="NAME.grant.json")
    endorsement.add_argument("--identity", type=Path, default=None,
                             help=f"your identity file (default MLBUS_IDENTITY, else {DEFAULT_IDENTITY})")
    endorsement.set_defaults(run=endorse_command, offline=True)
    services = sub.add_parser("enrol-services", help="(admin) declare the signing keys services made at their "
                                                     "first start (MLBUS_VAR/keys/*.enrolment.json)")
    services.set_defaults(run=enrol_services_command)
    listing = sub.add_parser("list", help="every key, its roles and validity (the broker's times), and every "
                                          "declaration refused")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=list_command)
    revoke = sub.add_parser("revoke", help="revoke a person's keys (one with --key): they sign nothing after now")
    revoke.add_argument("name")
    revoke.add_argument("--key", default=None, help="only this key id")
    revoke.set_defaults(run=revoke_command)


def as_admin(bus: Bus) -> Bus:
    """The same bus over the broker admin's credentials (people and ACLs are the admin's business)."""
    return Bus(bus.settings.connecting_as(ADMIN), bus.catalogue, bus.schemas)


def own_identity_path(given: Path | None) -> Path:
    if given is not None:
        return given
    return Path(os.environ["MLBUS_IDENTITY"]) if os.environ.get("MLBUS_IDENTITY") else DEFAULT_IDENTITY


def keygen_command(bus: None, args: argparse.Namespace) -> int:
    check_name(args.name)
    path = own_identity_path(args.out)
    if path.exists():
        raise ConfigError(f"{path} exists: give --out for another identity file (a second key) of {args.name}")
    private = Ed25519PrivateKey.generate().private_bytes_raw()
    kid, public, proof = prove_possession(args.name, private)
    secret = None
    if args.encrypt:
        secret = passphrase()
    Identity(args.name, "", kid, private, (), {}).save(path, secret)
    request = path.with_name(f"{args.name}.enrolment.json")
    request.write_text(json.dumps({"name": args.name, "key_id": kid, "public_key": public, "proof": proof},
                                  indent=2) + "\n")
    info(f"{args.name}: key {kid}; private key in {path} (0600{', encrypted' if secret else ''}: it stays here). "
         f"Send {request} to an admin: `mlbus people add {args.name} --role ROLE --enrolment {request.name}`")
    print(request)
    return 0


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is no person's name: lowercase letters, digits, - and _, from a letter")


def add_command(bus: Bus, args: argparse.Namespace) -> int:
    check_name(args.name)
    admin_bus = as_admin(bus)
    if args.name in RESERVED or bus.catalogue.namespace + args.name in {
            bus.catalogue.namespace + p for p in service_principals(bus.catalogue)}:
        raise ConfigError(f"{args.name} is the name of a service or of the broker's admin: a person takes another "
                          f"(they would share its broker credentials)")
    request = read_enrolment(args.enrolment, args.name)
    known = read_identities(admin_bus)
    if request["key_id"] in known.keys:
        raise ConfigError(f"key {request['key_id']} is declared already (to {known.keys[request['key_id']].name})")
    principal = bus.catalogue.namespace + args.name
    roles = sorted(set(args.role))
    grant = {**request, "principal": principal, "roles": roles, "revoked_at": None,
             "endorsements": [read_endorsement(path) for path in args.endorsement]}
    unendorsed = known.grant_refusal(grant, int(time.time() * 1000))
    if unendorsed:
        draft = args.enrolment.with_name(f"{args.name}.grant.json")
        draft.write_text(json.dumps({k: grant[k] for k in ("key_id", "name", "principal", "roles")}, indent=2) + "\n")
        raise ConfigError(f"{unendorsed}. Two admins each run `mlbus people endorse {draft}` with their own identity "
                          f"and hand back the .endorsement.json it writes; then `mlbus people add {args.name} "
                          f"{' '.join('--role ' + r for r in roles)} --enrolment {args.enrolment} "
                          f"--endorsement FILE --endorsement FILE`")
    AclAdmin(admin_bus).ensure_principal(principal)
    declare_key(admin_bus, request, principal, roles, grant["endorsements"])
    people = read_identities(admin_bus).people()
    apply_access(admin_bus, people, principals=False)
    kafka = read_properties(credentials_file(admin_bus.settings, principal))
    kafka.pop("bootstrap.servers", None)
    path = args.out or bus.settings.storage.var_dir / "identities" / f"{args.name}.credentials.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"name": args.name, "principal": principal, "key_id": request["key_id"],
                   "roles": roles, "kafka": {k: str(v) for k, v in kafka.items()}}, handle, indent=2)
    info(f"{args.name}: key {request['key_id']} enrolled, roles {', '.join(roles)}; broker credentials "
         f"in {path}: hand it to {args.name} (`mlbus people credentials {path.name}`), then delete it here")
    print(path)
    return 0


def read_endorsement(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
        return {"signer": str(raw["signer"]), "signer_key": str(raw["signer_key"]), "signature": str(raw["signature"])}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"cannot read the endorsement {path}: {error}") from None


def endorse_command(bus: None, args: argparse.Namespace) -> int:
    identity = Identity.load(own_identity_path(args.identity))
    try:
        raw = json.loads(args.grant.read_text())
        grant = {"key_id": str(raw["key_id"]), "name": str(raw["name"]), "principal": str(raw["principal"]),
                 "roles": [str(r) for r in raw["roles"]]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"cannot read the grant {args.grant}: {error}") from None
    path = args.grant.with_name(f"{grant['name']}.{identity.name}.endorsement.json")
    path.write_text(json.dumps(endorse(grant, identity.name, identity.private_key), indent=2) + "\n")
    info(f"{identity.name} endorses {', '.join(grant['roles'])} for {grant['name']} (key {grant['key_id']}): {path}")
    print(path)
    return 0


def enrol_services_command(bus: Bus, args: argparse.Namespace) -> int:
    enrolled = enrol_services(as_admin(bus))
    info(f"enrolled: {', '.join(enrolled)}" if enrolled else "no service key waits for enrolment")
    return 0


def credentials_command(bus: None, args: argparse.Namespace) -> int:
    path = own_identity_path(args.identity)
    identity = Identity.load(path)
    try:
        given = json.loads(args.file.read_text())
        name, principal, kid = str(given["name"]), str(given["principal"]), str(given["key_id"])
        roles, kafka = tuple(given["roles"]), {str(k): str(v) for k, v in dict(given["kafka"]).items()}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"cannot read the credentials file {args.file}: {error}") from None
    if (name, kid) != (identity.name, identity.key_id):
        raise ConfigError(f"{args.file} is for {name}'s key {kid}, not for {identity.name}'s key {identity.key_id}")
    encrypted = "private_key_encrypted" in json.loads(path.read_text())
    Identity(identity.name, principal, kid, identity.private_key, roles, kafka).save(
        path, passphrase() if encrypted else None)
    info(f"{identity.name}: broker credentials of {principal} added to {path}")
    return 0


def list_command(bus: Bus, args: argparse.Namespace) -> int:
    identities = read_identities(bus)
    keys = sorted(identities.keys.values(), key=lambda k: (k.name, k.created_at_ms))
    rows = [{"name": k.name, "key_id": k.key_id, "roles": list(k.roles), "principal": k.principal,
             "created_at": _iso(k.created_at_ms), "revoked_at": _iso(k.revoked_at_ms)} for k in keys]
    refused = [{"name": r.name, "key_id": r.key_id, "at": _iso(r.at_ms), "reason": r.reason}
               for r in identities.refused]
    if args.json:
        print_json({"keys": rows, "refused": refused})
        return 0
    print_table(["name", "key", "roles", "created", "revoked"],
                [[r["name"], r["key_id"][:16], ",".join(r["roles"]), r["created_at"], r["revoked_at"] or "-"]
                 for r in rows])
    for r in refused:
        info(f"REFUSED declaration of key {r['key_id'][:16]} for {r['name']} at {r['at']}: {r['reason']}")
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
        publish_declaration(admin_bus, {"key_id": key.key_id, "name": key.name, "principal": key.principal,
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
