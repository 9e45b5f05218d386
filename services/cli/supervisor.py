"""mlbus up | status | down: the local broker, the topics and the services as background processes."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.bus.acl_admin import apply_access
from services.bus.publish import announce_all
from services.bus.service_keys import SIGNING_SERVICES, await_enrolments
from services.adapters import declare_log_key, declare_witness_key
from services.bus.credentials import secured
from services.bus.context import Bus
from services.bus.identity import read_identities
from services.bus.settings import PROJECT_ROOT, ConfigError
from services.bus.supervision import (SCALED, SERVICES, available_services, child_pid_file, copy_name, copy_of,
                                      known_names, metrics_port, pid_file, run_dir, running_pid, service_rows,
                                      shard_owners)
from services.bus.topics import TopicAdmin, plan_topics
from .output import info, print_json, print_table

STOP_DEADLINE_S = 30
WITNESS_KEY_DEADLINE_S = 60         # the witness makes its key at its first start, before it reads the bus


def register(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser("up", help="start the local broker (unless MLBUS_BOOTSTRAP), apply topics, "
                                        "start services")
    up.add_argument("services", nargs="*", metavar="SERVICE",
                    help="services to start (default: all that exist); NAME=python.module runs your own")
    up.add_argument("--auditors", type=copies, default=1, metavar="N",
                    help="run N auditor copies (default 1): auditor, auditor-2, … each with MLBUS_INSTANCE its "
                         "number and a metrics port of its own; they share audit.log's shards (its partitions) "
                         "through a consumer group, and a copy's shards move to the others when it stops. Copies "
                         "already running are left as they are; mlbus down stops them all")
    up.set_defaults(run=up_command)
    status = commands.add_parser("status", help="each service with its pid and consumer lag (from its own /metrics "
                                                "where it serves them, else its group's committed offsets), and "
                                                "which auditor copy runs which audit.log shard")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=status_command)
    down = commands.add_parser("down", help="stop services gracefully, then the local broker")
    down.add_argument("--keep-broker", action="store_true", help="leave the local broker running")
    down.set_defaults(run=down_command)


def copies(text: str) -> int:
    """--auditors: a count of copies, at least one."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of copies (1 or more)")
    return int(text)


def requested_services(names: list[str]) -> dict[str, str]:
    """SERVICE or NAME=MODULE arguments → {name: module}; all existing services when none are named."""
    if not names:
        return available_services()
    wanted = {}
    for entry in names:
        name, _, module = entry.partition("=")
        if not module:
            if name not in SERVICES:
                raise ConfigError(f"unknown service {name!r}; known: {', '.join(SERVICES)} (or NAME=MODULE)")
            if name not in available_services():
                raise ConfigError(f"{name} is not implemented yet")
            module = SERVICES[name]
        wanted[name] = module
    return wanted


def up_command(bus: Bus, args: argparse.Namespace) -> int:
    services = requested_services(args.services)
    if args.auditors > 1 and not set(services) & set(SCALED):
        raise ConfigError(f"--auditors {args.auditors} but the auditor is not among the services to start")
    if not bus.settings.connection.bootstrap_env:
        start_local_broker(bus)
    admin = TopicAdmin(bus)
    existing = admin.existing()
    changes = plan_topics(bus.catalogue, existing)
    admin.apply(changes)
    info(f"topics: {len(changes)} change(s) applied")
    if set(services) & set(SCALED) and args.auditors > (shards := audit_shards(bus, existing)):
        info(f"audit.log has {shards} shard(s): {args.auditors - shards} of the {args.auditors} auditor copies "
             f"stand by, with no shard, until another copy stops (the shard count is fixed when audit.log is made)")
    if secured(bus.settings):
        made, created, _ = apply_access(bus, read_identities(bus).people())
        info(f"access: {len(made)} principal(s) made, {len(created)} ACL(s) created (mlbus acl plan shows them)")
    info(f"audit log signing key {declare_log_key(bus).key_id} (public key on the identities topic)")
    announce_all(bus)                   # only the admin writes the schemas topic
    for name, module in services.items():
        if name in SCALED:
            for copy in range(1, args.auditors + 1):
                start_service(bus, copy_name(name, copy), module, instance=str(copy))
        else:
            start_service(bus, name, module)
    signing = [name for name in services if name in SIGNING_SERVICES]
    for name in await_enrolments(bus, signing):
        info(f"{name}: its signing key enrolled (public key on the identities topic, role service)")
    if "witness" in services:
        declare_witness(bus)
    if not services:
        info("no services to start yet: the broker and the topics are up")
    info(f"bootstrap={bus.settings.bootstrap}")
    return 0


def audit_shards(bus: Bus, existing: dict) -> int:
    """audit.log's partitions (its shards): as the broker has it, else as topics.yaml makes it."""
    made = existing.get(bus.catalogue.physical("audit.log"))
    return made.partitions if made is not None else bus.catalogue.topics["audit.log"].partitions


def declare_witness(bus: Bus, directory: Path | None = None, deadline_s: float = WITNESS_KEY_DEADLINE_S) -> None:
    """The witness's public key on the identities topic (role witness), as the admin: the witness makes its key
    and its proof of possession in its own state directory (default MLBUS_WITNESS_DIR) at its first start; this
    waits for them."""
    directory = directory or bus.settings.audit.witness_dir
    deadline = time.monotonic() + deadline_s
    while (declared := declare_witness_key(bus, directory)) is None:
        if time.monotonic() > deadline:
            raise ConfigError(f"the witness wrote no key in {directory} within {deadline_s:.0f}s: see its log "
                              f"(var/log/witness.log under mlbus up)")
        time.sleep(0.1)
    info(f"witness key {declared} (public key on the identities topic, role witness)")


def start_local_broker(bus: Bus) -> None:
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "kafka"), "start",
                             "--dir", str(bus.settings.storage.var_dir / "kafka")], stdout=sys.stderr)
    if result.returncode != 0:
        raise ConfigError("the local broker did not start; see var/kafka/logs")


def start_service(bus: Bus, name: str, module: str, instance: str | None = None) -> None:
    """The service under a keep-alive in the background (instance: its MLBUS_INSTANCE, for a scaled service's
    copies)."""
    pid = running_pid(pid_file(bus, name))
    if pid:
        info(f"{name}: already running (pid {pid})")
        return
    log_path = bus.settings.storage.var_dir / "log" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLBUS_BOOTSTRAP": bus.settings.bootstrap}
    if metrics_port(bus, name):
        env["MLBUS_METRICS_PORT"] = str(metrics_port(bus, name))
    if instance is not None:
        env["MLBUS_INSTANCE"] = instance
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.cli.keepalive", name, module,
                                    str(child_pid_file(bus, name))],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=PROJECT_ROOT, start_new_session=True)
    pid_file(bus, name).write_text(f"{process.pid}\n")
    (run_dir(bus) / f"{name}.module").write_text(module + "\n")
    info(f"{name}: started (pid {process.pid}, log {log_path})")


def status_command(bus: Bus, args: argparse.Namespace) -> int:
    owners = shard_owners(bus) if any(running_pid(pid_file(bus, name)) for name in known_names(bus)
                                      if copy_of(name)[0] in SCALED) else None
    rows = service_rows(bus, owners)
    if args.json:
        print_json(rows)
        return 0
    print_table(["service", "state", "pid", "restarts", "lag", "lag from", "metrics", "shards"],
                [[r["service"], r["state"], r["service_pid"] or "-", r["restarts"],
                  "-" if r["lag"] is None else r["lag"], r["lag_source"], r["metrics"],
                  "-" if r["shards"] is None else ",".join(map(str, r["shards"])) or "none"] for r in rows])
    if owners is not None:
        print("\n".join(shard_lines(owners)))
    return 0


def shard_lines(owners: dict) -> list[str]:
    """audit.log's shards as the group `<ns>mlbus.auditor.shards` shares them out: every member (copies `up`
    runs and any started by hand), and the shards no copy runs."""
    if "error" in owners:
        return [f"auditor shards: not known ({owners['group']} did not answer: {owners['error']})"]
    lines = [f"auditor shards: {owners['shards']} (group {owners['group']}, {len(owners['members'])} member(s))"]
    lines += [f"  {m['copy'] or m['client_id']} ({m['client_id']} on {m['host'].lstrip('/')}): "
              f"{', '.join(map(str, m['shards'])) or 'none'}"
              for m in owners["members"]]
    if owners["unassigned"]:
        lines.append(f"  run by no copy: {', '.join(map(str, owners['unassigned']))}")
    return lines


def down_command(bus: Bus, args: argparse.Namespace) -> int:
    for name in known_names(bus):
        stop_process(name, pid_file(bus, name))
    if not bus.settings.connection.bootstrap_env and not args.keep_broker:
        subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "kafka"), "stop",
                        "--dir", str(bus.settings.storage.var_dir / "kafka")], stdout=sys.stderr)
    return 0


def stop_process(name: str, path: Path) -> None:
    pid = running_pid(path)
    if pid is None:
        path.unlink(missing_ok=True)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_DEADLINE_S
    while running_pid(path) and time.monotonic() < deadline:
        time.sleep(0.1)
    if running_pid(path):
        os.killpg(pid, signal.SIGKILL)
        info(f"{name}: did not stop in {STOP_DEADLINE_S}s, killed")
    else:
        info(f"{name}: stopped")
    path.unlink(missing_ok=True)
