"""mlbus approve | reject | models policy | models list | models show."""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from services.bus.edge import content
from services.bus.context import Bus
from services.bus.envelope import new_id
from services.bus.errors import BadInput
from services.bus.identity import Identity
from services.bus.projections.inventory import INVENTORY_RECORDS, Inventory
from services.bus.replay import fold_history

from .deploy_cmd import deployments
from .acts import artifact_of, person, send
from .inputs import load_yaml
from .output import info, print_json, print_table


def register(commands: argparse._SubParsersAction) -> None:
    for decision in ("approve", "reject"):
        parser = commands.add_parser(decision, help=f"{decision} a model version (the registry checks the policy)")
        parser.add_argument("model")
        parser.add_argument("version", type=int)
        parser.add_argument("--reason", required=True, help="why: recorded with the decision")
        parser.set_defaults(run=decision_command, decision=decision)


def register_models(sub: argparse._SubParsersAction) -> None:
    policy = sub.add_parser("policy", help="publish a model's promotion policy (YAML)")
    policy.add_argument("policy", type=Path)
    policy.set_defaults(run=policy_command)
    listing = sub.add_parser("list", help="every model version with its status and aliases")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=list_command)
    show = sub.add_parser("show", help="one model (or MODEL@VERSION): lineage, metrics, decisions, aliases")
    show.add_argument("target", metavar="MODEL[@VERSION]")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=show_command)
    card = sub.add_parser("card", help="a version's model card, built only from audit.log (purpose, data, estimator, "
                                       "metrics, governance, deployments, drift)")
    card.add_argument("target", metavar="MODEL@VERSION")
    card.add_argument("--format", choices=("md", "html", "json"), default="md")
    card.add_argument("--until", default=None, help="the card as it stood at this time (ISO 8601)")
    card.add_argument("--out", type=Path, default=None, help="write it to a file (default: stdout)")
    card.set_defaults(run=card_command)


def decision_command(bus: Bus, args: argparse.Namespace) -> int:
    identity = person(args)
    approval_id = submit_decision(bus, identity, args.model, args.version, args.decision, args.reason)
    info(f"{args.decision} of {args.model} v{args.version} by {identity.name} submitted ({approval_id}); "
         f"the registry's decision: mlbus models show {args.model}@{args.version}")
    return 0


def submit_decision(bus: Bus, identity: Identity, model: str, version: int, decision: str, reason: str,
                    artifact_sha256: str | None = None) -> str:
    """A person's signed approve/reject of a model version (the CLI's and the console's), bound to the version's
    artifact (looked up when not given); its id."""
    approval_id = new_id()
    value = {"approval_id": approval_id, "model": model, "version": version, "decision": decision,
             "actor": identity.name, "reason": reason, "submitted_at": datetime.now(timezone.utc),
             "artifact_sha256": artifact_sha256 or artifact_of(bus, model, version)}
    send(bus, identity, "mlbus.ApprovalSubmitted", value, model, approval_id, f"{model}@{version}")
    return approval_id


def policy_command(bus: Bus, args: argparse.Namespace) -> int:
    raw = load_yaml(args.policy)
    if "model" not in raw or "metric" not in raw:
        raise BadInput("a policy names its model and the metric compared with the champion")
    from services.domain import FAIRNESS_METRICS     # the fairness figures a policy may name
    unknown = sorted(set(raw.get("fairness") or {}) - set(FAIRNESS_METRICS))
    if unknown:
        raise BadInput(f"unknown fairness figures {', '.join(unknown)}; choose from {', '.join(FAIRNESS_METRICS)}")
    previous = inventory(bus).policies.get(raw["model"], {}).get("policy_version", 0)
    actor = f"cli:{person(args).name}"
    value = {"model": raw["model"], "policy_version": previous + 1,
             "thresholds": {k: float(v) for k, v in raw.get("thresholds", {}).items()}, "metric": raw["metric"],
             "fairness": {k: float(v) for k, v in (raw.get("fairness") or {}).items()},
             "min_improvement": float(raw.get("min_improvement", 0.0)),
             "human_approval": bool(raw.get("human_approval", True)),
             "approvers": [str(a) for a in raw.get("approvers", [])], "four_eyes": bool(raw.get("four_eyes", True)),
             "defined_by": actor, "defined_at": datetime.now(timezone.utc)}
    send(bus, args.identity, "mlbus.PromotionPolicyDefined", value, raw["model"])
    info(f"policy v{value['policy_version']} of {raw['model']} published")
    return 0


def inventory(bus: Bus) -> Inventory:
    """The registry's projection, folded here from the topics (the same code the registry runs)."""
    folded = Inventory()
    fold_history(bus, INVENTORY_RECORDS, folded.apply)
    return folded


def list_command(bus: Bus, args: argparse.Namespace) -> int:
    folded = inventory(bus)
    rows = []
    for (model, version), entry in sorted(folded.versions.items()):
        aliases = [a for a, v in folded.aliases.get(model, {}).items() if v == version]
        metric = entry.trained["metric"]
        rows.append({"model": model, "version": version, "status": entry.status, "aliases": aliases,
                     "metric": metric, "value": entry.trained["metrics"].get(metric),
                     "requested_by": entry.trained["requested_by"], "trained_at": entry.trained["trained_at"]})
    if args.json:
        print_json(rows)
        return 0
    print_table(["model", "version", "status", "aliases", "metric", "trained at", "requested by"],
                [[r["model"], r["version"], r["status"], ",".join(r["aliases"]) or "-",
                  f"{r['metric']} {r['value']:.4f}", r["trained_at"].strftime("%Y-%m-%d %H:%M"), r["requested_by"]]
                 for r in rows])
    return 0


def show_command(bus: Bus, args: argparse.Namespace) -> int:
    model, _, version = args.target.partition("@")
    folded = inventory(bus)
    entries = [e for (m, _), e in sorted(folded.versions.items()) if m == model and version in ("", str(e.version))]
    if not entries:
        raise BadInput(f"no registered version matches {args.target}")
    history = deployments(bus).history.get(model, [])
    shown = [{"model": e.model, "version": e.version, "status": e.status,
              "aliases": [a for a, v in folded.aliases.get(model, {}).items() if v == e.version],
              "trained": e.trained, "decisions": e.history,
              "deployments": [d for d in history if any(r["version"] == e.version for r in d["routes"])
                              or d["version"] == e.version]} for e in entries]
    if args.json:
        print_json(shown)
        return 0
    from .model_card import fairness_lines     # numpy, pandas: only for the text view
    policy = folded.policies.get(model)
    print(f"{model}: policy {'v%d' % policy['policy_version'] if policy else 'none (default: a human approves)'}, "
          f"aliases {folded.aliases.get(model, {})}")
    for entry in shown:
        t = entry["trained"]
        print(f"\nv{entry['version']}  {entry['status']}  {','.join(entry['aliases'])}")
        print(f"  run {t['run_id']}  {t['estimator']} {t['hyperparameters_json']}  seed {t['seed']}")
        print(f"  metrics {json.dumps({k: round(v, 4) for k, v in t['metrics'].items()})}")
        print(f"  data {', '.join(b['batch_id'][:8] + ' sha256 ' + b['sha256'][:12] for b in t['batches'])}")
        print(f"  artifact {t['artifact_sha256'][:16]}…  code {t['code_version']} @ {(t['git_commit'] or '-')[:10]}")
        for line in fairness_lines(content(t.get("fairness_json")) or "fairness: not measured (no "
                                   "sensitive attribute in the contract)"):
            print(f"  {line.removeprefix('- ').replace('**', '')}")
        if t.get("importances"):
            ranked = sorted(t["importances"].items(), key=lambda kv: -kv[1])
            print("  importance " + ", ".join(f"{k} {v:.4f}" for k, v in ranked[:8])
                  + (" …" if len(ranked) > 8 else ""))
        for m in t.get("members") or []:
            print(f"  member {m['model']} v{m['version']} weight {m['weight']:g}  "
                  f"artifact {m['artifact_sha256'][:16]}…")
        for decision in entry["decisions"]:
            print(f"  {decision['occurred_at']:%Y-%m-%d %H:%M:%S}  {decision['kind']:16} by {decision['actor']}: "
                  f"{decision['reason']}")
        for d in entry["deployments"]:
            share = next((r["share"] for r in d["routes"] if r["version"] == entry["version"]), 0.0)
            print(f"  {d['changed_at']:%Y-%m-%d %H:%M:%S}  deployment {d['phase']:9} {d['strategy']}: "
                  f"{share:.0%} of traffic — {d['reason'][:60]}")
    return 0


def card_command(bus: Bus, args: argparse.Namespace) -> int:
    from services.adapters import audit_records, decoded
    from .model_card import CARD_RECORDS, html, markdown, model_card
    from .monitor_cmd import parse_time
    model, _, version = args.target.partition("@")
    if not version.isdigit():
        raise BadInput("give MODEL@VERSION, e.g. claims_fraud@1")
    until = parse_time(args.until) if args.until else None
    card = model_card(list(decoded(bus, audit_records(bus, CARD_RECORDS))), model, int(version), until)
    if card is None:
        raise BadInput(f"audit.log holds no version {args.target}" + (f" trained by {args.until}" if until else ""))
    text = {"md": markdown, "html": html,
            "json": lambda c: json.dumps(c, indent=2, default=str) + "\n"}[args.format](card)
    if args.out:
        args.out.write_text(text)
        info(f"model card of {args.target} written to {args.out}")
    else:
        print(text, end="")
    return 0
