"""mlbus models define | mlbus train | mlbus runs list / compare."""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path

from services.domain import monitoring_json, parse_monitoring, training_request
from services.bus.context import Bus
from services.bus.envelope import new_id
from services.bus.errors import BadInput
from services.bus.edge import InvalidField, check_name, content
from services.bus.settings import ConfigError
from services.bus.replay import read_topics

from . import cost_cmd, registry_cmd
from .acts import person, send
from .inputs import load_yaml
from .output import info, print_json, print_table

SPEC_DEFAULTS = {"hyperparameters": {}, "grid": {}, "test_size": 0.25, "cv_folds": 5, "seed": 0, "batches": "all",
                 "encoding": "onehot"}
REQUIRED = ("model", "dataset", "target", "features", "task", "estimator", "metric")
ENSEMBLE_REQUIRED = ("model", "dataset", "target", "task", "metric", "members", "combine")   # features: the members'
ENSEMBLE_FIELDS = ("members", "combine", "weights")
CARD_FIELDS = ("owner", "description", "intended_use", "limitations", "risk_level")    # optional: the model card


def register(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="model specs (and, with the registry, the inventory)")
    sub = models.add_subparsers(dest="models_command", required=True)
    define = sub.add_parser("define", help="publish a model spec (YAML) for the trainer")
    define.add_argument("spec", type=Path)
    define.set_defaults(run=define_command)
    registry_cmd.register_models(sub)
    cost_cmd.register(sub)
    train = commands.add_parser("train", help="ask the trainer for a training now, or reproduce a run")
    train.add_argument("model", nargs="?", help="model to train")
    train.add_argument("--batch", action="append", default=[], help="train on exactly these batch ids")
    train.add_argument("--reproduce", metavar="RUN_ID", help="re-run a recorded run and compare the results")
    train.add_argument("--wait", type=float, default=None, metavar="S",
                       help="wait up to S seconds for the result (default: 300 with --reproduce, else no wait)")
    train.set_defaults(run=train_command)
    runs = commands.add_parser("runs", help="experiment tracking: every fit with parameters and metrics")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_sub.add_parser("list", help="runs, newest last")
    listing.add_argument("model", nargs="?")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=runs_list_command)
    compare = runs_sub.add_parser("compare", help="two runs' parameters and metrics side by side")
    compare.add_argument("runs", nargs=2, metavar="RUN_ID")
    compare.add_argument("--json", action="store_true")
    compare.set_defaults(run=runs_compare_command)


def spec_record(raw: dict, actor: str, contracts_dir: Path) -> dict:
    """A spec YAML as a ModelSpecDefined value; `features: all` means the contract's columns but key and target.
    A spec with `members` is an ensemble's: its features are its members', its estimator `Ensemble`."""
    if "members" in raw:
        raw = {**raw, "estimator": "Ensemble", "features": [], "ensemble": {k: raw[k] for k in ENSEMBLE_FIELDS
                                                                           if k in raw}}
        missing = [k for k in ENSEMBLE_REQUIRED if k not in raw]
    else:
        raw = {"features": [], **raw} if "feature_views" in raw else raw     # the views' features may be all
        missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise BadInput(f"spec lacks {', '.join(missing)}")
    spec = {**SPEC_DEFAULTS, **raw}
    try:
        check_name("model", spec["model"])
        check_name("dataset", spec["dataset"])
    except InvalidField as error:
        raise BadInput(str(error)) from None
    columns = contract_columns(contracts_dir, spec["dataset"], spec["target"])
    views_json = feature_views_json(spec.get("feature_views"), contracts_dir, spec["dataset"])
    if views_json is not None and columns is not None:      # a label's entity and time are not its features
        label = (spec["feature_views"]["entity"], spec["feature_views"]["time"])
        columns = {c: kind for c, kind in columns.items() if c not in label}
    if spec["features"] == "all" and "ensemble" not in spec:
        if columns is None:
            raise BadInput(f"features: all needs the contract {contracts_dir / spec['dataset']}.avsc")
        spec["features"] = list(columns)
    unknown = [f for f in spec["features"] if columns is not None and f not in columns]
    if unknown:
        raise BadInput(f"features not among the contract's feature columns: {', '.join(map(str, unknown[:10]))}")
    # categories: the contract's string columns among the features (without a contract, the spec says which)
    categorical = [f for f in spec["features"] if columns is not None and columns[f] == "categorical"] \
        if columns is not None else list(spec.get("categorical", []))
    sensitive = contract_rules(contracts_dir, spec["dataset"]).get("sensitive", [])
    canonical = json.dumps(spec, sort_keys=True)
    record = {"model": spec["model"], "dataset": spec["dataset"], "target": spec["target"],
            "features": list(spec["features"]), "categorical_features": categorical, "encoding": str(spec["encoding"]),
            "sensitive_features": [str(c) for c in sensitive],
            "task": spec["task"], "estimator": spec["estimator"],
            "hyperparameters_json": json.dumps(spec["hyperparameters"], sort_keys=True),
            "grid_json": json.dumps(spec["grid"], sort_keys=True), "metric": spec["metric"],
            "ensemble_json": json.dumps(spec.get("ensemble", {}), sort_keys=True),
            "test_size": float(spec["test_size"]), "cv_folds": int(spec["cv_folds"]), "seed": int(spec["seed"]),
            "spec_sha256": hashlib.sha256(canonical.encode()).hexdigest(), "defined_by": actor,
            "defined_at": datetime.now(timezone.utc), "batches": str(spec["batches"]),
            "monitoring_json": monitoring_json(parse_monitoring(spec.get("monitoring"))),
            "card_json": json.dumps({k: str(spec[k]) for k in CARD_FIELDS if spec.get(k) is not None}, sort_keys=True),
            "compute": spec.get("compute"),         # local | dask; left out: the trainer's choice (spec_problem checks)
            "feature_views_json": views_json}
    from services.domain import spec_problem    # scikit-learn: loaded by the command that needs it
    problem = spec_problem(record)         # the trainer refuses the same: hyperparameters, split, features
    if problem:
        raise BadInput(f"spec of {record['model']}: {problem}")
    return record


def feature_views_json(raw: object, contracts_dir: Path, dataset: str) -> str | None:
    """A spec's `feature_views` block as ModelSpecDefined.feature_views_json (None without one); its entity and
    time must be columns of the dataset's contract, if it has one."""
    if raw is None:
        return None
    from services.domain import settings_problem as feature_views_problem
    problem = feature_views_problem(raw)
    if problem:
        raise BadInput(problem)
    path = contracts_dir / f"{dataset}.avsc"
    fields = [f["name"] for f in json.loads(path.read_text())["fields"]] if path.is_file() else None
    strays = [raw[k] for k in ("entity", "time") if fields is not None and raw[k] not in fields]
    if strays:
        raise BadInput(f"feature_views: {', '.join(strays)} not a column of the contract {path}")
    return json.dumps({"views": list(raw["views"]), "entity": raw["entity"], "time": raw["time"]}, sort_keys=True)


def contract_rules(contracts_dir: Path, dataset: str) -> dict:
    """The contract's `mlbus.contract` block (keys, target, sensitive, ...); {} without a contract."""
    path = contracts_dir / f"{dataset}.avsc"
    return json.loads(path.read_text()).get("mlbus.contract", {}) if path.is_file() else {}


def contract_columns(contracts_dir: Path, dataset: str, target: str) -> dict[str, str] | None:
    """The contract's columns that may be features (not a key, not the spec's target nor the dataset's label),
    each `numeric` or `categorical` (a string column), in the contract's order; None without a contract."""
    path = contracts_dir / f"{dataset}.avsc"
    if not path.is_file():
        return None
    contract = json.loads(path.read_text())
    rules = contract.get("mlbus.contract", {})
    left_out = set(rules.get("keys", [])) | {target, rules.get("target")}      # the dataset's own label too
    return {f["name"]: "numeric" if has_kind(f["type"], NUMERIC) else "categorical" for f in contract["fields"]
            if f["name"] not in left_out and has_kind(f["type"], NUMERIC + ("string",))}


NUMERIC = ("int", "long", "float", "double")


def has_kind(avro_type, kinds: tuple[str, ...]) -> bool:
    return any(kind in kinds for kind in (avro_type if isinstance(avro_type, list) else [avro_type]))


def define_command(bus: Bus, args: argparse.Namespace) -> int:
    actor = f"cli:{person(args).name}"
    value = spec_record(load_yaml(args.spec), actor, bus.settings.storage.contracts_dir)
    send(bus, args.identity, "mlbus.ModelSpecDefined", value, value["model"])
    ensemble = content(value["ensemble_json"])
    inputs = f"{ensemble['combine']} of {', '.join(ensemble['members'])}" if ensemble else \
        f"{len(value['features'])} features"
    info(f"defined {value['model']}: {value['estimator']} on {value['dataset']} → {value['target']}, "
         f"{inputs}, metric {value['metric']}")
    return 0


def train_command(bus: Bus, args: argparse.Namespace) -> int:
    if bool(args.model) == bool(args.reproduce):
        raise ConfigError("name a MODEL to train, or --reproduce RUN_ID")
    actor = f"cli:{person(args).name}"
    model = args.model or run_by_id(bus, args.reproduce)["model"]
    request_id = new_id()
    request = training_request(request_id, model, "reproduce" if args.reproduce else "manual", actor,
                               datetime.now(timezone.utc), batch_ids=args.batch, reproduce_run_id=args.reproduce)
    send(bus, args.identity, request.record, request.value, model, request_id)
    info(f"training requested: {request_id}")
    wait = args.wait if args.wait is not None else (300.0 if args.reproduce else 0.0)
    if wait <= 0:
        return 0
    runs = wait_for_runs(bus, request_id, wait)
    if args.reproduce:
        [run] = runs
        verdict = "IDENTICAL" if run["identical"] else "DIFFERENT"
        print(f"reproduction of {args.reproduce}: {verdict}")
        for difference in run["differences"]:
            print(f"  - {difference}")
        return 0 if run["identical"] else 1
    chosen = [r for r in runs if r["chosen"]]
    print(f"{model} v{chosen[0]['version']} trained (run {chosen[0]['run_id']})" if chosen else "no version chosen")
    return 0


def wait_for_runs(bus: Bus, request_id: str, timeout_s: float) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [r for r in all_runs(bus) if r["request_id"] == request_id]
        if runs:
            return runs
        refused = [a for a in read_topics(bus, ["alerts"]) if a.value["cause_id"] == request_id]
        if refused:
            raise BadInput(refused[0].value["message"])
        time.sleep(1.0)
    raise BadInput(f"no result for request {request_id} within {timeout_s:.0f}s (is the trainer running?)")


def all_runs(bus: Bus, model: str | None = None) -> list[dict]:
    topic = bus.catalogue.for_schema("mlbus.TrainingRun").name
    return [r.value for r in read_topics(bus, [topic]) if model in (None, r.value["model"])]


def run_by_id(bus: Bus, run_id: str) -> dict:
    found = [r for r in all_runs(bus) if r["run_id"].startswith(run_id)]
    if len(found) != 1:
        raise BadInput(f"{'no' if not found else 'more than one'} run matches {run_id!r}")
    return found[0]


def runs_list_command(bus: Bus, args: argparse.Namespace) -> int:
    runs = all_runs(bus, args.model)
    if args.json:
        print_json([{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()} for r in runs])
        return 0
    print_table(["run", "model", "version", "reason", "estimator", "params", "metric", "holdout", "cv"],
                [[r["run_id"][:8], r["model"], r["version"] or ("repro" if r["reproduces_run_id"] else "-"),
                  r["reason"], r["estimator"], r["hyperparameters_json"][:40], r["metric"],
                  f"{r['metrics'].get(r['metric'], float('nan')):.4f}",
                  f"{r['cv_metrics'].get(r['metric'], float('nan')):.4f}"] for r in runs])
    return 0


def runs_compare_command(bus: Bus, args: argparse.Namespace) -> int:
    left, right = (run_by_id(bus, run_id) for run_id in args.runs)
    rows = [["estimator", left["estimator"], right["estimator"]],
            ["version", left["version"], right["version"]], ["seed", left["seed"], right["seed"]]]
    for name, source in (("param", "hyperparameters_json"),):
        lp, rp = content(left[source]), content(right[source])
        rows += [[f"{name} {k}", lp.get(k, "-"), rp.get(k, "-")] for k in sorted(set(lp) | set(rp))]
    for name in sorted(set(left["metrics"]) | set(right["metrics"])):
        rows.append([f"holdout {name}", _fmt(left["metrics"].get(name)), _fmt(right["metrics"].get(name))])
    for name in sorted(set(left["cv_metrics"]) | set(right["cv_metrics"])):
        rows.append([f"cv {name}", _fmt(left["cv_metrics"].get(name)), _fmt(right["cv_metrics"].get(name))])
    rows.append(["batches", len(left["batches"]), len(right["batches"])])
    if args.json:
        print_json({"fields": [{"field": r[0], "left": r[1], "right": r[2]} for r in rows]})
        return 0
    print_table(["field", left["run_id"][:8], right["run_id"][:8]], rows)
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
