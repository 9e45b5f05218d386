"""mlbus up | status | down: the local broker, the topics and the services as background processes."""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.bus.context import Bus
from services.bus.settings import PROJECT_ROOT, ConfigError
from services.bus.topics import TopicAdmin, consumer_lag, plan_topics

from .output import info, print_json, print_table

# Service name → Python module under services/. `up` starts those whose module exists.
SERVICES = {"validator": "validator", "trainer": "trainer", "registry": "registry", "deployer": "deployer",
            "drift-watcher": "drift_watcher", "auditor": "auditor"}
STOP_DEADLINE_S = 30


def register(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser("up", help="start the local broker (unless MLBUS_BOOTSTRAP), apply topics, "
                                        "start services")
    up.add_argument("services", nargs="*", help="services to start (default: all that exist)")
    up.set_defaults(run=up_command)
    status = commands.add_parser("status", help="each service with its pid and consumer lag")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=status_command)
    down = commands.add_parser("down", help="stop services gracefully, then the local broker")
    down.add_argument("--keep-broker", action="store_true", help="leave the local broker running")
    down.set_defaults(run=down_command)


def available_services() -> list[str]:
    return [name for name, module in SERVICES.items() if (PROJECT_ROOT / "services" / module / "__main__.py").exists()]


def up_command(bus: Bus, args: argparse.Namespace) -> int:
    unknown = sorted(set(args.services) - set(SERVICES))
    if unknown:
        raise ConfigError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    if not bus.settings.bootstrap_env:
        start_local_broker(bus)
    admin = TopicAdmin(bus)
    changes = plan_topics(bus.catalogue, admin.existing())
    admin.apply(changes)
    info(f"topics: {len(changes)} change(s) applied")
    names = args.services or available_services()
    missing = [n for n in names if n not in available_services()]
    if missing:
        raise ConfigError(f"not implemented yet: {', '.join(missing)}")
    for name in names:
        start_service(bus, name)
    if not names:
        info("no services to start yet: the broker and the topics are up")
    info(f"bootstrap={bus.settings.bootstrap}")
    return 0


def start_local_broker(bus: Bus) -> None:
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "kafka"), "start",
                             "--dir", str(bus.settings.var_dir / "kafka")], stdout=sys.stderr)
    if result.returncode != 0:
        raise ConfigError("the local broker did not start; see var/kafka/logs")


def start_service(bus: Bus, name: str) -> None:
    pid = running_pid(pid_file(bus, name))
    if pid:
        info(f"{name}: already running (pid {pid})")
        return
    log_path = bus.settings.var_dir / "log" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLBUS_BOOTSTRAP": bus.settings.bootstrap}
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.cli.keepalive", name, SERVICES[name]],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=PROJECT_ROOT, start_new_session=True)
    pid_file(bus, name).write_text(f"{process.pid}\n")
    info(f"{name}: started (pid {process.pid}, log {log_path})")


def status_command(bus: Bus, args: argparse.Namespace) -> int:
    rows = []
    for name in available_services():
        pid = running_pid(pid_file(bus, name))
        topics = [t.name for t in bus.catalogue.consumed_by(name)]
        lag = sum(consumer_lag(bus, f"{bus.settings.namespace}mlbus.{name}", topics).values()) if pid else None
        rows.append({"service": name, "state": "running" if pid else "stopped", "pid": pid, "lag": lag})
    if args.json:
        print_json(rows)
    else:
        print_table(["service", "state", "pid", "lag"], [[r["service"], r["state"], r["pid"] or "-",
                                                         "-" if r["lag"] is None else r["lag"]] for r in rows])
    return 0


def down_command(bus: Bus, args: argparse.Namespace) -> int:
    for name in SERVICES:
        stop_process(name, pid_file(bus, name))
    if not bus.settings.bootstrap_env and not args.keep_broker:
        subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "kafka"), "stop",
                        "--dir", str(bus.settings.var_dir / "kafka")], stdout=sys.stderr)
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


def pid_file(bus: Bus, name: str) -> Path:
    run_dir = bus.settings.var_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir / f"{bus.settings.namespace}{name}.pid"


def running_pid(path: Path) -> int | None:
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists() and stat.read_text().split()[2] == "Z":
        return None
    return pid
