"""Where `mlbus up` keeps its services' processes on this machine (pid files under var/run/<namespace>/, one
keep-alive per service) and what they tell with the consumer groups' lag: the rows `mlbus status` prints and the
console's overview shows."""
from __future__ import annotations

import os
from pathlib import Path

from .context import Bus
from .settings import PROJECT_ROOT
from .topics import committed_topics, running_lag, service_group

# mlbus's services → their modules. `up` starts those that exist; NAME=MODULE adds one of your own.
SERVICES = {"validator": "services.validator", "trainer": "services.trainer", "registry": "services.registry",
            "deployer": "services.deployer", "scorer": "services.scorer",
            "drift-watcher": "services.drift_watcher",
            "auditor": "services.auditor", "notifier": "services.notifier", "witness": "services.witness",
            "console": "services.console"}


def available_services() -> dict[str, str]:
    return {name: module for name, module in SERVICES.items() if module_exists(module)}


def module_exists(module: str) -> bool:
    path = PROJECT_ROOT / module.replace(".", "/")
    return (path / "__main__.py").exists() or path.with_suffix(".py").exists()


def metrics_port(bus: Bus, name: str) -> int:
    """Where `mlbus up` has a service serve its Prometheus metrics: the base port + its place in SERVICES; 0 for
    the console (a web page, not a consumer), the witness (no runtime: its log says what it co-signed) and for
    services of your own (set MLBUS_METRICS_PORT for them)."""
    names = [n for n in SERVICES if n not in ("console", "witness")]
    return bus.settings.observability.metrics_base_port + names.index(name) if name in names else 0


def service_rows(bus: Bus) -> list[dict]:
    """Each service `up` knows: running or not, its pid, restarts since `up`, and its consumer lag with where the
    figure came from (lag_source: "metrics", its own /metrics; "committed", its group's committed offsets)."""
    rows = []
    for name in sorted(set(available_services()) | set(known_names(bus))):
        pid = running_pid(pid_file(bus, name))
        group = service_group(bus, name) if pid else f"{bus.settings.connection.namespace}mlbus.{name}"
        topics = [t.name for t in bus.catalogue.consumed_by(name)] or committed_topics(bus, group)
        lag, source = running_lag(bus, group, topics, metrics_port(bus, name)) if pid else ({}, "-")
        restarts = Path(restarts_file(str(child_pid_file(bus, name))))
        rows.append({"service": name, "state": "running" if pid else "stopped", "pid": pid,
                     "service_pid": running_pid(child_pid_file(bus, name)),
                     "restarts": int(restarts.read_text()) if pid and restarts.exists() else 0,
                     "lag": sum(lag.values()) if lag else None,      # None: not known yet (nothing committed)
                     "lag_by_topic": lag, "lag_source": source if lag else "-",
                     "metrics": f"http://127.0.0.1:{port}/metrics"
                     if pid and (port := metrics_port(bus, name)) else "-"})
    return rows


def run_dir(bus: Bus) -> Path:
    """Pid files of one namespace's services: var/run/<namespace>/."""
    path = bus.settings.storage.var_dir / "run" / (bus.settings.connection.namespace.rstrip(".") or "default")
    path.mkdir(parents=True, exist_ok=True)
    return path


def pid_file(bus: Bus, name: str) -> Path:
    """The keep-alive's pid: signalling it stops the service it watches."""
    return run_dir(bus) / f"{name}.pid"


def child_pid_file(bus: Bus, name: str) -> Path:
    return run_dir(bus) / f"{name}.service"


def known_names(bus: Bus) -> list[str]:
    """Every service `up` has started in this namespace (mlbus's own and the user's), running or not."""
    return sorted(p.stem for p in run_dir(bus).glob("*.module"))


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


def restarts_file(child_pid_file: str) -> str:
    """Where a service's keep-alive counts its restarts: beside the service's pid file."""
    return os.path.splitext(child_pid_file)[0] + ".restarts"
