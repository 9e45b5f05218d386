"""mlbus acl plan | apply: the broker's principals and ACLs, derived from topics.yaml."""
from __future__ import annotations

import argparse

from services.bus.access import plan_acls
from services.bus.acl_admin import apply_access
from services.bus.context import Bus
from services.bus.identity import read_identities
from services.bus.publish import announce_all
from services.adapters import declare_log_key

from .output import info, print_json


def register(commands: argparse._SubParsersAction) -> None:
    acl = commands.add_parser("acl", help="broker principals and ACLs derived from topics.yaml (admin)")
    sub = acl.add_subparsers(dest="acl_command", required=True)
    plan = sub.add_parser("plan", help="print every ACL the catalogue implies (no broker needed)")
    plan.add_argument("--json", action="store_true", help="print JSON instead of lines")
    plan.set_defaults(run=plan_command)
    apply = sub.add_parser("apply", help="create missing principals (credentials in the clients directory), "
                                         "ACLs and the auditor's signing key; "
                                         "report ACLs the catalogue does not imply (idempotent)")
    apply.add_argument("--json", action="store_true", help="print the changes as JSON")
    apply.set_defaults(run=apply_command)


def plan_command(bus: Bus, args: argparse.Namespace) -> int:
    grants = sorted(plan_acls(bus.catalogue, people_roles(bus)))
    if args.json:
        print_json([g.__dict__ for g in grants])
    else:
        for grant in grants:
            print(grant.describe())
        info(f"{len(grants)} ACLs")
    return 0


def apply_command(bus: Bus, args: argparse.Namespace) -> int:
    made, created, extra = apply_access(bus, people_roles(bus))
    signer = declare_log_key(bus)
    announce_all(bus)                   # only the admin writes the schemas topic
    if args.json:
        print_json({"principals_made": made, "created": [g.__dict__ for g in sorted(created)],
                    "not_in_catalogue": [g.__dict__ for g in sorted(extra)]})
        return 0
    for grant in sorted(created):
        print(f"created  {grant.describe()}")
    for grant in sorted(extra):
        print(f"extra    {grant.describe()}   (not implied by topics.yaml; remove it by hand if unwanted)")
    info(f"principals made: {', '.join(made) or 'none'}; {len(created)} ACLs created; {len(extra)} extra; "
         f"audit log signing key {signer.key_id}")
    return 0


def people_roles(bus: Bus) -> dict[str, list[str]]:
    """Each person's principal and roles, from the identities topic."""
    return read_identities(bus).people()
