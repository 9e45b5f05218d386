"""mlbus models cost MODEL: what each version cost — to train (wall and CPU seconds of every grid point, from
the trainer's process) and to serve (the scorer's CPU seconds per 1,000 predictions, per variant) — beside
the KPI change `kpi report` attributes to it (cost-benefit)."""
from __future__ import annotations

import argparse
from collections import defaultdict

from services.bus.context import Bus
from services.bus.errors import BadInput
from services.bus.replay import read_topics

from .deploy_cmd import deployments
from .output import print_json, print_table


def register(sub: argparse._SubParsersAction) -> None:
    cost = sub.add_parser("cost", help="each version's training and serving cost, beside its KPI change")
    cost.add_argument("model")
    cost.add_argument("--json", action="store_true")
    cost.set_defaults(run=cost_command)


def serving_costs(predictions: list[dict]) -> dict[tuple[int, str], dict]:
    """(version, variant) → predictions counted and CPU seconds per 1,000 of them (pure)."""
    totals: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for p in predictions:
        if p["version"] is not None and not p["error"]:
            total = totals[(p["version"], p["variant"])]
            total[0] += 1
            total[1] += p.get("cpu_ms") or 0.0
    return {key: {"predictions": n, "cpu_s_per_1000": cpu_ms / n if n else 0.0} for key, (n, cpu_ms) in totals.items()}


def version_costs(trained: list[dict], runs: list[dict], predictions: list[dict],
                  kpi_changes: dict[int, list]) -> list[dict]:
    """One row per version: training wall and CPU time (every grid point), serving CPU per variant, and the
    KPI changes attributed to the version (pure)."""
    served = serving_costs(predictions)
    rows = []
    for version in sorted(trained, key=lambda t: t["version"]):
        fits = [r for r in runs if r["request_id"] == version["request_id"] and r["reproduces_run_id"] is None]
        rows.append({"version": version["version"], "estimator": version["estimator"], "grid_points": len(fits),
                     "fit_wall_s": version["duration_ms"] / 1000,
                     "fit_cpu_s": version.get("cpu_seconds") or sum(r.get("cpu_seconds") or 0.0 for r in fits),
                     "serving": {variant: cost for (v, variant), cost in sorted(served.items())
                                 if v == version["version"]},
                     "kpi_changes": kpi_changes.get(version["version"], [])})
    return rows


def cost_command(bus: Bus, args: argparse.Namespace) -> int:
    from services.domain import before_after, for_model      # scipy: loaded by the commands that need it
    record = {name: [r.value for r in read_topics(bus, [bus.catalogue.for_schema(name).name])
                     if r.value["model"] == args.model]
              for name in ("mlbus.ModelTrained", "mlbus.TrainingRun", "mlbus.Prediction")}
    if not record["mlbus.ModelTrained"]:
        raise BadInput(f"no version of {args.model} is on record")
    history = deployments(bus).history.get(args.model, [])
    observations = for_model([r.value for r in read_topics(bus, ["kpis"])], args.model, None)
    changes: dict[int, list] = defaultdict(list)
    for name in sorted({o["name"] for o in observations}):
        for comparison in before_after([o for o in observations if o["name"] == name], history):
            version = int(comparison.label.rsplit("v", 1)[-1])          # "v1 → v2": the change is v2's
            changes[version].append({"kpi": name, **comparison.as_dict()})
    rows = version_costs(record["mlbus.ModelTrained"], record["mlbus.TrainingRun"], record["mlbus.Prediction"], changes)
    if args.json:
        print_json({"model": args.model, "versions": rows})
        return 0
    print_table(["version", "estimator", "fits", "fit wall s", "fit CPU s", "serving CPU s / 1,000 predictions",
                 "KPI change (95 % interval)"],
                [[f"v{r['version']}", r["estimator"], r["grid_points"], f"{r['fit_wall_s']:.2f}",
                  f"{r['fit_cpu_s']:.2f}",
                  ", ".join(f"{variant} {c['cpu_s_per_1000']:.3f} ({c['predictions']:,})"
                            for variant, c in r["serving"].items()) or "-",
                  "; ".join(f"{c['kpi']} {c['difference']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]"
                            for c in r["kpi_changes"] if c["difference"] is not None) or "-"]
                 for r in rows])
    return 0
