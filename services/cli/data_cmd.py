"""mlbus data publish | sample | validations | report."""
from __future__ import annotations

import argparse
from pathlib import Path

from services.bus.context import Bus
from services.bus.errors import BadInput
from services.bus.jsonio import to_json
from services.bus.replay import read_topics

from .output import info, print_json, print_table
from .acts import person, signed
from .sample_data import DATASETS


def register(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="publish data batches and read their validation reports")
    sub = data.add_subparsers(dest="data_command", required=True)
    publish = sub.add_parser("publish", help="snapshot a CSV or Parquet file and publish it as a batch")
    publish.add_argument("dataset", help="dataset name; its contract is schemas/datasets/DATASET.avsc")
    publish.add_argument("path", type=Path)
    publish.add_argument("--label", action="append", default=[], metavar="K=V", help="free-form labels")
    publish.set_defaults(run=publish_command)
    make = sub.add_parser("sample", help="write a sample dataset: breast_cancer (ships with scikit-learn), "
                                         "insurance_claims (synthetic, with categories, fixed seed)")
    make.add_argument("name", choices=DATASETS)
    make.add_argument("out", type=Path, help="a .csv or .parquet path")
    make.add_argument("--rows", type=int, default=None,
                      help="rows (breast_cancer: all 569 by default, more resamples; insurance_claims: 2,000)")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--offset", type=int, default=0, help="first id (keeps ids unique across batches)")
    make.set_defaults(run=sample_command)
    listing = sub.add_parser("validations", help="every validation: batch, passed or failed, why")
    listing.add_argument("--dataset", default=None)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=validations_command)
    report = sub.add_parser("report", help="one batch's validation report with its column profile")
    report.add_argument("batch_id")
    report.add_argument("--json", action="store_true")
    report.set_defaults(run=report_command)


def publish_command(bus: Bus, args: argparse.Namespace) -> int:
    from services.adapters import publish_batch
    labels = dict(label.split("=", 1) for label in args.label if "=" in label)
    try:
        identity = person(args)
        batch = publish_batch(bus, args.dataset, args.path, actor=f"cli:{identity.name}", labels=labels,
                              sign=lambda record, value: signed(bus, identity, record, value))
    except (FileNotFoundError, ValueError) as error:
        raise BadInput(str(error)) from None
    info(f"published batch {batch['batch_id']} of {args.dataset}: {batch['rows']} rows, sha256 {batch['sha256'][:12]}…")
    print(batch["batch_id"])
    return 0


def sample_command(bus: Bus, args: argparse.Namespace) -> int:
    from .sample_data import sample
    frame = sample(args.name, args.rows, args.seed, args.offset)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(args.out, index=False) if args.out.suffix == ".parquet" else frame.to_csv(args.out, index=False)
    info(f"wrote {len(frame)} rows × {len(frame.columns)} columns to {args.out}")
    return 0


def validations(bus: Bus, dataset: str | None = None) -> list[dict]:
    topic = bus.catalogue.for_schema("mlbus.DataValidated").name
    return [r.value for r in read_topics(bus, [topic]) if dataset in (None, r.value["dataset"])]


def validations_command(bus: Bus, args: argparse.Namespace) -> int:
    found = validations(bus, args.dataset)
    if args.json:
        print_json([to_json({k: v for k, v in r.items() if k != "profile"}) for r in found])
        return 0
    print_table(["validated at", "dataset", "batch", "rows", "result", "why"],
                [[r["validated_at"].strftime("%Y-%m-%d %H:%M:%S"), r["dataset"], r["batch_id"][:8], r["rows"],
                  "passed" if r["passed"] else "FAILED",
                  "; ".join(f["message"] for f in r["failures"])[:100] or f"{len(r['warnings'])} warning(s)"]
                 for r in found])
    return 0


def report_command(bus: Bus, args: argparse.Namespace) -> int:
    found = [r for r in validations(bus) if r["batch_id"].startswith(args.batch_id)]
    if not found:
        raise BadInput(f"no validation of batch {args.batch_id} on the bus (yet)")
    report = found[-1]
    if args.json:
        print_json(to_json(report))
        return 0
    print(f"batch {report['batch_id']} of {report['dataset']} ({report['rows']} rows, contract "
          f"{report['contract']}): {'PASSED' if report['passed'] else 'FAILED'}")
    for kind, items in (("failure", report["failures"]), ("warning", report["warnings"])):
        for item in items:
            where = f" [{item['column']}]" if item["column"] else ""
            print(f"  {kind}: {item['check']}{where}: {item['message']} (rows e.g. {item['examples']})")
    if report["profile"]:
        print_table(["column", "kind", "missing", "mean", "std", "min", "max"],
                    [[p["name"], p["kind"], p["missing"], _num(p["mean"]), _num(p["std"]), _num(p["min"]),
                      _num(p["max"])] for p in report["profile"]])
    return 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
