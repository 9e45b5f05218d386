"""mlbus k8s render: topics.yaml, the principals' ACLs and the services as a kustomize base for a cluster with
Strimzi and KEDA (no broker, no cluster needed: it only writes files)."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from services.adapters import declare_log_key
from services.bus.access import ROLES, service_principals
from services.bus.catalogue import load_catalogue
from services.bus.context import Bus
from services.bus.publish import announce_all
from services.bus.projections.identities import NAME
from services.bus.settings import ConfigError, Settings
from services.bus.supervision import SERVICES

from .k8s.render import Base, render, workloads
from .k8s.target import Target
from .output import info, print_json
from .people_cmd import RESERVED


MAX_REPLICAS = 32767


def register(commands: argparse._SubParsersAction) -> None:
    k8s = commands.add_parser("k8s", help="Kubernetes manifests for a cluster with Strimzi and KEDA")
    sub = k8s.add_subparsers(dest="k8s_command", required=True)
    found = sub.add_parser("render", help="write a kustomize base: a KafkaTopic per topic, a KafkaUser per "
                                          "principal with the ACLs of `mlbus acl plan`, each service's Deployment "
                                          "and Secret, NetworkPolicies, KEDA ScaledObjects (no broker needed)")
    found.add_argument("--namespace", default="mlbus", help="Kubernetes namespace (default mlbus)")
    found.add_argument("--out", type=Path, default=Path("k8s"), help="directory to write (default ./k8s)")
    found.add_argument("--cluster", default="mlbus", help="the Strimzi Kafka resource's name (default mlbus)")
    found.add_argument("--image", default="mlbus:latest", help="the services' image, built from "
                                                               "compose/Dockerfile (default mlbus:latest)")
    found.add_argument("--replication", type=int, default=None,
                       help="replicas of every topic (default MLBUS_REPLICATION, else 3: a cluster's, with "
                            "min.insync.replicas 2; topics.yaml's one is the local broker's)")
    found.add_argument("--person", action="append", default=[], type=person, metavar="NAME=ROLE[,ROLE]",
                       help="also a KafkaUser for this person (the name `mlbus people add` takes; its principal "
                            "is MLBUS_NAMESPACE + NAME), with their roles' ACLs (repeatable)")
    found.add_argument("--json", action="store_true", help="print the files written and their kinds as JSON")
    found.set_defaults(run=render_command, offline=True)
    prepare = sub.add_parser("prepare", help="(admin, once per cluster) declare the auditor's signing key (made at "
                                             "MLBUS_AUDIT_KEY if missing) and announce every schema: what `acl "
                                             "apply` does besides users and ACLs, which Strimzi's operators own "
                                             "there (never run `acl apply` against them: it resets passwords)")
    prepare.set_defaults(run=prepare_command)


def person(text: str) -> tuple[str, list[str]]:
    """--person ana=approver,viewer → (ana, [approver, viewer])."""
    name, _, roles = text.partition("=")
    wanted = [r for r in roles.split(",") if r]
    if not name or not wanted or set(wanted) - set(ROLES):
        raise argparse.ArgumentTypeError(f"{text!r}: NAME=ROLE[,ROLE], roles among {', '.join(ROLES)}")
    if not NAME.fullmatch(name):        # people add's rule: what it would refuse has no key to enrol here
        raise argparse.ArgumentTypeError(f"{name!r} is no person's name: lowercase letters, digits, - and _, "
                                         "from a letter, 63 at most")
    return name, wanted


def people_principals(people: list[tuple[str, list[str]]], prefix: str) -> dict[str, list[str]]:
    """Each --person's principal (as `mlbus people add` makes it: MLBUS_NAMESPACE + name) and all the roles given
    them, however many times they are named."""
    found: dict[str, list[str]] = {}
    for name, roles in people:
        found.setdefault(prefix + name, [])
        found[prefix + name] += [r for r in roles if r not in found[prefix + name]]
    return found


CLUSTER_REPLICATION = 3      # one replica loses its leader when its broker stops (docs/explanation/guarantees.md)


def render_command(_bus: None, args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.replication is not None and not 1 <= args.replication <= MAX_REPLICAS:
        raise ConfigError(f"--replication {args.replication}: a topic has 1 to {MAX_REPLICAS} replicas (Kafka "
                          "counts them in a 16-bit number; Strimzi's KafkaTopic takes no more)")
    catalogue = load_catalogue(settings.storage.topics_file, settings.connection.namespace,
                               args.replication or settings.connection.replication or CLUSTER_REPLICATION)
    target = Target(args.namespace, args.cluster, args.image, settings.connection.namespace)
    taken = sorted({name for name, _ in args.person} & {*RESERVED, *service_principals(catalogue)})
    if taken:
        raise ConfigError(f"{', '.join(taken)}: the name of a service or of the broker's admin, not a person's "
                          "(`mlbus people add` refuses it too: they would share its credentials)")
    base = render(catalogue, people_principals(args.person, catalogue.namespace), workloads(SERVICES), target)
    write_base(base, args.out)
    kinds = {name: sorted({m["kind"] for m in manifests}) for name, manifests in base.files.items()}
    if args.json:
        print_json({"out": str(args.out), "files": kinds, "secret_files": secret_files(base)})
        return 0
    for name, found in kinds.items():
        print(f"{args.out / name}: {', '.join(found)}")
    info(f"put these files under {args.out} before `kubectl apply -k {args.out}` (kustomize refuses to build "
         f"without them): {', '.join(secret_files(base))}")
    return 0


def prepare_command(bus: Bus, _args: argparse.Namespace) -> int:
    key = declare_log_key(bus)
    announce_all(bus)
    info(f"audit log signing key {key.key_id} declared (its seed: {bus.settings.audit.key}, the auditor's "
         f"secrets/auditor/auditor.ed25519); schemas announced")
    return 0


def write_base(base: Base, out: Path) -> None:
    """Each file of the base and kustomization.yaml; secrets/ (what the person applying it adds) is left alone."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    out.mkdir(parents=True, exist_ok=True)
    for name, manifests in base.files.items():
        (out / name).write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    (out / "kustomization.yaml").write_text(yaml.safe_dump(base.kustomization, sort_keys=False))


def secret_files(base: Base) -> list[str]:
    """The key files the Secrets are made of, relative to the base (secrets/<service>/<file>)."""
    return [entry.partition("=")[2] for generator in base.kustomization["secretGenerator"]
            for entry in generator["files"]]
