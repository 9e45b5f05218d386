"""A model card built only from the record (pure): audit.log's events in, the card of one version out — as it
stood at any moment (`--until`), each section naming the audit sequence numbers it stands on.

Sections: purpose and owner (from the spec the version was trained with), training data (batches, hashes,
contract, validation), estimator and parameters, holdout and cross-validated metrics, fairness and global
importances (permutation importance on the holdout), policy and who decided under which evidence, deployments, drift and
online performance since."""
from __future__ import annotations

import json
from datetime import datetime

from services.bus.edge import content
from services.domain import Audited, FAIRNESS_METRICS

CARD_RECORDS = ("mlbus.DataBatch", "mlbus.DataValidated", "mlbus.ModelTrained", "mlbus.PromotionPolicyDefined",
                "mlbus.ModelLifecycle", "mlbus.DeploymentChanged", "mlbus.DriftReport", "mlbus.Alert")
NO_SENSITIVE = "not measured: the dataset's contract names no sensitive attribute (mlbus.contract.sensitive)"
NO_IMPORTANCES = "not recorded: the version was trained before mlbus recorded them"


def model_card(events: list[Audited], model: str, version: int, until: datetime | None = None) -> dict | None:
    """The card of model@version from these events (those after `until` left out), or None if it was not
    trained by then."""
    seen = [e for e in events if e.record and (until is None or e.at <= until)]
    trained = next((e for e in seen if e.record == "mlbus.ModelTrained" and e.value["model"] == model
                    and e.value["version"] == version), None)
    if trained is None:
        return None
    t = trained.value
    batches = {b["batch_id"] for b in t["batches"]}
    mine = [e for e in seen if e.value.get("model") == model and e.value.get("version") == version]
    decisions = [e for e in mine if e.record == "mlbus.ModelLifecycle"]
    policy_versions = {d.value["policy_version"] for d in decisions if d.value["policy_version"] is not None}
    policies = [e for e in seen if e.record == "mlbus.PromotionPolicyDefined" and e.value["model"] == model
                and e.value["policy_version"] in policy_versions]
    deployments = [e for e in seen if e.record == "mlbus.DeploymentChanged" and e.value["model"] == model
                   and any(r["version"] == version for r in e.value["routes"])]
    drift = [e for e in mine if e.record == "mlbus.DriftReport"]
    alerts = [e for e in mine if e.record == "mlbus.Alert" and e.value["severity"] != "info"]
    return {
        "model": model, "version": version, "as_of": until, **_cited(trained),
        "purpose": {**content(t.get("card_json")), "task": t["task"], "target": t["target"]},
        "training_data": [{"batch_id": e.value["batch_id"], "dataset": e.value["dataset"], "sha256": e.value["sha256"],
                           "rows": e.value["rows"], **_cited(e),
                           "validation": next(({"contract": v.value["contract"], "passed": v.value["passed"],
                                                **_cited(v)} for v in seen
                                               if v.record == "mlbus.DataValidated"
                                               and v.value["batch_id"] == e.value["batch_id"]), None)}
                          for e in seen if e.record == "mlbus.DataBatch" and e.value["batch_id"] in batches],
        "estimator": {"estimator": t["estimator"], "hyperparameters": content(t["hyperparameters_json"]),
                      "features": t["features"], "categorical_features": t.get("categorical_features") or [],
                      "seed": t["seed"], "artifact_sha256": t["artifact_sha256"], "code_version": t["code_version"],
                      "git_commit": t["git_commit"], "run_id": t["run_id"],
                      "members": [{k: m[k] for k in ("model", "version", "artifact_sha256", "weight")}
                                  for m in t.get("members") or []]},
        "metrics": {"holdout": t["metrics"], "cross_validated": t["cv_metrics"] or {}},
        "fairness": content(t.get("fairness_json")) or NO_SENSITIVE,
        "importances": dict(sorted((t.get("importances") or {}).items(), key=lambda kv: -kv[1])) or NO_IMPORTANCES,
        "governance": {"policies": [{**_plain(p.value), **_cited(p)} for p in policies],
                       "decisions": [{"kind": d.value["kind"], "actor": d.value["actor"], "reason": d.value["reason"],
                                      "at": d.at, "policy_version": d.value["policy_version"],
                                      "evidence": content(d.value["evidence_json"]),
                                      **_cited(d)} for d in decisions]},
        "deployments": [{"deployment_id": d.value["deployment_id"], "phase": d.value["phase"],
                         "strategy": d.value["strategy"], "at": d.at, "actor": d.value["actor"],
                         "share": next(r["share"] for r in d.value["routes"] if r["version"] == version),
                         **_cited(d)} for d in deployments],
        "monitoring": {"windows": len(drift), "drifted_windows": sum(d.value["dataset_drift"] for d in drift),
                       "last_window": ({"window_id": drift[-1].value["window_id"],
                                        "drift_share": drift[-1].value["drift_share"],
                                        "performance": drift[-1].value["performance"],
                                        **_cited(drift[-1])} if drift else None),
                       "alerts": [{"kind": a.value["kind"], "severity": a.value["severity"],
                                   "message": a.value["message"],
                                   "at": a.at, **_cited(a)} for a in alerts[-10:]]},
    }


def _plain(policy: dict) -> dict:
    return {**{k: policy[k] for k in ("policy_version", "metric", "thresholds", "min_improvement", "human_approval",
                                      "approvers", "four_eyes", "defined_by")},
            "fairness": policy.get("fairness") or {}}


def markdown(card: dict) -> str:
    """The card as Markdown (values are the record's own; nothing is inferred)."""
    p, e, m, g = card["purpose"], card["estimator"], card["metrics"], card["governance"]
    lines = [f"# Model card: {card['model']} v{card['version']}",
             f"_From audit.log{' as of ' + str(card['as_of']) if card['as_of'] else ''}; trained at audit "
             f"#{_at(card)}._", "", "## Purpose"]
    lines += [f"- **{k.replace('_', ' ')}**: {p[k]}" for k in ("description", "owner", "intended_use", "limitations",
                                                               "risk_level") if p.get(k)] or ["- (the spec gave none)"]
    lines += [f"- **task**: {p['task']} of `{p['target']}`", "", "## Training data"]
    lines += [f"- batch `{b['batch_id']}` of {b['dataset']}: {b['rows']} rows, sha256 `{b['sha256']}` "
              f"[#{_at(b)}]"
              + (f" — {'passed' if b['validation']['passed'] else 'FAILED'} {b['validation']['contract']} "
                 f"[#{_at(b['validation'])}]" if b["validation"] else "") for b in card["training_data"]]
    lines += ["", "## Estimator",
              f"- {e['estimator']} `{json.dumps(e['hyperparameters'], sort_keys=True)}`, seed {e['seed']}",
              f"- features: {', '.join(e['features'])}" + (f" (categorical: {', '.join(e['categorical_features'])})"
                                                          if e["categorical_features"] else ""),
              f"- artifact sha256 `{e['artifact_sha256']}`, code {e['code_version']} @ {e['git_commit'] or '-'}, "
              f"run `{e['run_id']}`"]
    lines += [f"- ensemble member {x['model']} v{x['version']} (weight {x['weight']:g}), artifact sha256 "
              f"`{x['artifact_sha256']}`" for x in e["members"]]
    lines += ["", "## Metrics",
              "- holdout: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(m["holdout"].items())),
              "- cross-validated: " + (", ".join(f"{k} {v:.4f}" for k, v in sorted(m["cross_validated"].items()))
                                       or "-"),
              "", "## Fairness", *fairness_lines(card["fairness"]), "",
              "## Global importances (permutation, holdout: how much the metric drops when the column is shuffled)",
              *([f"- {name}: {value:.4f}" for name, value in card["importances"].items()]
                if isinstance(card["importances"], dict) else [f"- {card['importances']}"]), "",
              "## Governance"]
    lines += [f"- policy v{x['policy_version']} by {x['defined_by']}: metric {x['metric']}, "
              f"thresholds {x['thresholds']}"
              + (f", fairness limits {x['fairness']}" if x["fairness"] else "") + ", "
              f"approvers {x['approvers'] or 'anyone'}, four-eyes {x['four_eyes']} [#{_at(x)}]"
              for x in g["policies"]]
    lines += [f"- {d['kind']} by {d['actor']}: {d['reason']} [#{_at(d)}]" for d in g["decisions"]]
    lines += ["", "## Deployments"]
    lines += [f"- {d['at']:%Y-%m-%d %H:%M:%S} {d['strategy']} {d['phase']} ({d['share']:.0%} of traffic) "
              f"by {d['actor']} "
              f"[#{_at(d)}]" for d in card["deployments"]] or ["- never deployed"]
    mon = card["monitoring"]
    lines += ["", "## Drift and online performance",
              f"- {mon['windows']} windows judged, {mon['drifted_windows']} with dataset drift"]
    if mon["last_window"]:
        last = mon["last_window"]
        lines.append(f"- last window {last['window_id']}: drift share {last['drift_share']:.0%}"
                     + "".join(f"; {x['variant']} {x['metric']} {x['value']:.4f} over {x['outcomes']} outcomes"
                               for x in last["performance"]) + f" [#{_at(last)}]")
    lines += [f"- [{a['severity']}] {a['kind']}: {a['message']} [#{_at(a)}]" for a in mon["alerts"]]
    return "\n".join(lines) + "\n"


def fairness_lines(fairness: dict | str) -> list[str]:
    if isinstance(fairness, str):
        return [f"- {fairness}"]
    lines = []
    for attribute, report in sorted(fairness.items()):
        figures = ", ".join(f"{k} {report[k]:.4f}" for k in FAIRNESS_METRICS if report.get(k) is not None)
        lines.append(f"- **{attribute}** (groups of ≥ {report['min_group_size']} holdout rows judged: "
                     f"{', '.join(report['judged_groups']) or 'none'}): {figures or 'not judged'}")
        lines += [f"  - {group}: "
                  + ", ".join(f"{k} {'n/a' if v is None else int(v) if k == 'count' else format(v, '.3f')}"
                              for k, v in values.items())
                  for group, values in report["groups"].items()]
    return lines


def html(card: dict) -> str:
    """The Markdown card in a minimal HTML page; every value escaped (a name is data, never markup)."""
    from jinja2 import Environment
    page = Environment(autoescape=True).from_string(
        "<!doctype html><meta charset=utf-8><title>Model card {{ c.model }} v{{ c.version }}</title>"
        "<pre style='white-space:pre-wrap;font:14px/1.5 system-ui'>{{ text }}</pre>")
    return page.render(c=card, text=markdown(card))


def _cited(event) -> dict:
    """Where a card's fact stands: its record's sequence, and in a sharded log its place (`shard:sequence`), which
    is what `audit prove` takes (a bare sequence is shard 0's)."""
    return {"audit_sequence": event.sequence, **({"audit_place": event.place} if event.sharded else {})}


def _at(cited: dict) -> str:
    return str(cited.get("audit_place", cited["audit_sequence"]))
