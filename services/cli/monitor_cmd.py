"""mlbus kpi publish | kpi report | drift status."""
from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

from services.bus.context import Bus
from services.bus.envelope import new_id
from services.bus.errors import BadInput
from services.bus.replay import read_topics

from .deploy_cmd import deployments
from .acts import person, send
from .output import info, print_json, print_table


def register(commands: argparse._SubParsersAction) -> None:
    kpi = commands.add_parser("kpi", help="business KPIs: publish an observation, report it against deployments")
    sub = kpi.add_subparsers(dest="kpi_command", required=True)
    publish = sub.add_parser("publish", help="publish one KPI observation (what a business app does)")
    publish.add_argument("name")
    publish.add_argument("value", type=float)
    publish.add_argument("--at", default=None, help="end of the observed window, ISO 8601 (default: now)")
    publish.add_argument("--window", type=float, default=60.0, help="length of the observed window in s (60)")
    publish.add_argument("--dim", action="append", default=[], metavar="K=V",
                         help="a dimension, e.g. variant=challenger, model=churn, segment=eu (repeatable)")
    publish.set_defaults(run=kpi_publish_command)
    report = sub.add_parser("report", help="a KPI before vs after each deployment change, and per variant")
    report.add_argument("model")
    report.add_argument("--kpi", default=None, help="one KPI by name (default: each one observed)")
    report.add_argument("--json", action="store_true")
    report.set_defaults(run=kpi_report_command)
    drift = commands.add_parser("drift", help="production drift as the drift-watcher reported it")
    drift_sub = drift.add_subparsers(dest="drift_command", required=True)
    status = drift_sub.add_parser("status", help="the latest windows per version, and per feature")
    status.add_argument("model", nargs="?")
    status.add_argument("--windows", type=int, default=5, help="recent windows to list per version (5)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=drift_status_command)


def kpi_publish_command(bus: Bus, args: argparse.Namespace) -> int:
    actor = person(args).name
    end = parse_time(args.at) if args.at else datetime.now(timezone.utc)
    dimensions = dict(parse_dimension(d) for d in args.dim)
    kpi_id = new_id()
    send(bus, args.identity, "mlbus.KpiObserved", {
        "kpi_id": kpi_id, "name": args.name, "value": args.value, "window_start": end - timedelta(seconds=args.window),
        "window_end": end, "dimensions": dimensions, "source": f"cli:{actor}",
        "observed_at": datetime.now(timezone.utc)}, args.name, kpi_id)
    info(f"kpi {args.name}={args.value} at {end.isoformat()} published ({kpi_id})")
    return 0


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--at {text!r} is not an ISO 8601 time (e.g. 2026-11-23T10:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_dimension(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise BadInput(f"--dim {text!r} must look like key=value")
    return key, value


def kpi_report_command(bus: Bus, args: argparse.Namespace) -> int:
    # scipy: the domain loads kpi_report on first use, in the one command that needs it (a fast CLI)
    from services.domain import KPI_CONFIDENCE, before_after, by_variant, for_model
    observations = for_model([r.value for r in read_topics(bus, ["kpis"])], args.model, args.kpi)
    history = deployments(bus).history.get(args.model, [])
    names = sorted({o["name"] for o in observations})
    report = {name: {"before_after": [c.as_dict() for c in before_after(of(observations, name), history)],
                     "by_variant": [c.as_dict() for c in by_variant(of(observations, name), history)],
                     "observations": len(of(observations, name))} for name in names}
    if args.json:
        print_json({"model": args.model, "confidence": KPI_CONFIDENCE, "kpis": report})
        return 0
    if not names:
        info(f"no KPI observations for {args.model}" + (f" named {args.kpi}" if args.kpi else ""))
        return 0
    for name in names:
        print(f"{name} ({report[name]['observations']} observations; {KPI_CONFIDENCE:.0%} intervals)")
        print_comparisons("before → after deployment change", report[name]["before_after"])
        print_comparisons("per variant", report[name]["by_variant"])
    return 0


def of(observations: list[dict], name: str) -> list[dict]:
    return [o for o in observations if o["name"] == name]


def print_comparisons(title: str, comparisons: list[dict]) -> None:
    if not comparisons:
        print(f"  {title}: nothing to compare")
        return
    print(f"  {title}:")
    print_table(["compared", "at", "n", "mean", "n'", "mean'", "difference", "interval", "t", "p", "significant"],
                [[c["label"], c["at"].strftime("%m-%d %H:%M:%S") if c["at"] else "-", c["n_base"], num(c["mean_base"]),
                  c["n_other"], num(c["mean_other"]), num(c["difference"]),
                  f"[{num(c['ci_low'])}, {num(c['ci_high'])}]", num(c["statistic"]), num(c["p_value"]),
                  "yes" if c["significant"] else "no"] for c in comparisons])


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def drift_status_command(bus: Bus, args: argparse.Namespace) -> int:
    reports = [r.value for r in read_topics(bus, ["monitoring.drift"])
               if args.model is None or r.value["model"] == args.model]
    by_version: dict[tuple[str, int], list[dict]] = {}
    for report in sorted(reports, key=lambda r: (r["window_end"], r["window_id"])):
        by_version.setdefault((report["model"], report["version"]), []).append(report)
    if args.json:
        print_json([{"model": m, "version": v, "windows": windows[-args.windows:]}
                    for (m, v), windows in sorted(by_version.items())])
        return 0
    if not by_version:
        info("no drift reports yet" + (f" for {args.model}" if args.model else ""))
        return 0
    for (model, version), windows in sorted(by_version.items(), key=lambda item: (item[0][0], -item[0][1])):
        latest = windows[-1]
        print(f"{model} v{version}{' (champion)' if latest['champion'] else ''}: {len(windows)} windows")
        print_table(["window", "closed", "rows", "drift share", "dataset drift", "drifted features"],
                    [[w["window_id"], w["window_end"].strftime("%H:%M:%S"), w["rows"], f"{w['drift_share']:.0%}",
                      "YES" if w["dataset_drift"] else "no", drifted_names(w)] for w in windows[-args.windows:]])
        print(f"  latest window {latest['window_id']}, per feature:")
        print_table(["feature", "method", "statistic", "threshold", "p", "drifted"],
                    [[f["feature"], f["method"], num(f["statistic"]), num(f["threshold"]), num(f["p_value"]),
                      f["level"] if f["level"] else ("drift" if f["drifted"] else "ok")]
                     for f in latest["features"]
                     + ([latest["prediction_drift"]] if latest["prediction_drift"] else [])])
    return 0


def drifted_names(report: dict) -> str:
    names = sorted({f["feature"] for f in report["features"] if f["drifted"]})
    return ", ".join(names[:6]) + (f" (+{len(names) - 6})" if len(names) > 6 else "") or "-"
