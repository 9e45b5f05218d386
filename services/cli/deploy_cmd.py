"""mlbus deploy | rollback | deployments."""
from __future__ import annotations

import argparse
from datetime import datetime, timezone

from services.bus.context import Bus
from services.bus.envelope import new_id
from services.bus.identity import Identity
from services.bus.projections.deployments import Deployments
from services.bus.replay import fold_history

from .acts import artifact_of, person, send
from .output import info, print_json, print_table

STRATEGIES = ("replace", "canary", "shadow", "champion-challenger")


def register(commands: argparse._SubParsersAction) -> None:
    deploy = commands.add_parser("deploy", help="deploy an approved version with a strategy")
    deploy.add_argument("model")
    deploy.add_argument("version", type=int)
    deploy.add_argument("--strategy", choices=STRATEGIES, default="replace")
    deploy.add_argument("--percent", type=int, default=None, help="champion-challenger: the challenger's share")
    deploy.add_argument("--steps", default="10,25,50,100", help="canary: percent per step (default 10,25,50,100)")
    deploy.add_argument("--interval", type=float, default=60.0, help="canary: seconds per step (default 60)")
    deploy.add_argument("--reason", default="")
    deploy.set_defaults(run=deploy_command, action="deploy")
    rollback = commands.add_parser("rollback", help="back to the champion (during a canary) or the one before")
    rollback.add_argument("model")
    rollback.add_argument("--reason", default="")
    rollback.set_defaults(run=deploy_command, action="rollback", version=None, strategy="replace", percent=None,
                          steps="", interval=0.0)
    listing = commands.add_parser("deployments", help="what serves each model now, and the history")
    listing.add_argument("model", nargs="?")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=deployments_command)


def deploy_command(bus: Bus, args: argparse.Namespace) -> int:
    request_id = request_deployment(bus, person(args), args.model, args.version, args.action, args.strategy,
                                    args.percent, [int(s) for s in args.steps.split(",") if s.strip()],
                                    args.interval, args.reason)
    info(f"{args.action} of {args.model} requested ({request_id}); see `mlbus deployments {args.model}`")
    return 0


def request_deployment(bus: Bus, identity: Identity, model: str, version: int | None, action: str, strategy: str,
                       percent: int | None, steps: list[int], interval_s: float, reason: str) -> str:
    """A person's signed deploy or rollback request (the CLI's and the console's); its id."""
    request_id = new_id()
    value = {"request_id": request_id, "model": model, "version": version, "action": action, "strategy": strategy,
             "percent": percent, "steps": steps, "step_interval_s": interval_s, "actor": identity.name,
             "reason": reason, "requested_at": datetime.now(timezone.utc),
             "artifact_sha256": artifact_of(bus, model, version) if action == "deploy" and version else None}
    send(bus, identity, "mlbus.DeploymentRequested", value, model, request_id)
    return request_id


def deployments(bus: Bus) -> Deployments:
    folded = Deployments()
    fold_history(bus, ("mlbus.DeploymentChanged",), folded.apply)
    return folded


def deployments_command(bus: Bus, args: argparse.Namespace) -> int:
    folded = deployments(bus)
    models = [args.model] if args.model else sorted(folded.history)
    if args.json:
        print_json({m: {"current": folded.current.get(m), "history": folded.history.get(m, [])} for m in models})
        return 0
    for model in models:
        current = folded.current.get(model)
        routes = ", ".join(f"v{r['version']} {r['variant']} {r['share']:.0%}{'' if r['served'] else ' (shadow)'}"
                           for r in (current or {}).get("routes", []))
        print(f"{model}: {routes or 'nothing deployed'}")
        print_table(["time", "phase", "strategy", "version", "routes", "by", "why"],
                    [[d["changed_at"].strftime("%H:%M:%S"), d["phase"], d["strategy"], d["version"] or "-",
                      " ".join(f"v{r['version']}:{r['share']:.0%}" for r in d["routes"]), d["actor"], d["reason"][:70]]
                     for d in folded.history.get(model, [])])
    return 0
