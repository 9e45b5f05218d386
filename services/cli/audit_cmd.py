"""mlbus audit verify | checkpoint | key | prove | check-proof | replay | explain | timeline | export | forget |
rebuild-registry."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from services.domain import (REDACTED, STATE_RECORDS, AuditIndex, audit_timeline, check_proof, explain_request,
                             explain_scoring, head_of_checkpoint, public_pem, shard_of_log_id, state_at)
from services.adapters import (audit_export, audit_proof, audit_records, checkpoints, decoded, log_id, log_signers,
                               newest_committed, verification, witness_keys)
from services.bus.edge import content
from services.bus.context import Bus
from services.bus.envelope import new_id
from services.bus.errors import BadInput
from services.bus.settings import PROJECT_ROOT

from .audit_trust import key_files, proof_witness_problem, run_witness
from .acts import person, send
from .monitor_cmd import parse_time
from .output import info, print_json, print_json_line, print_table
from .supervisor import declare_witness
from .audit_verdict import verdict_lines


def register(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser("audit", help="governance from audit.log: verify, replay, explain, export")
    sub = audit.add_subparsers(dest="audit_command", required=True)
    check = sub.add_parser("verify", help="recompute the hash chain and the Merkle tree from the start and check "
                                          "every signed head, on the topic and in the anchor (exit 1 names the "
                                          "first bad record or head)")
    check.add_argument("--from-checkpoint", type=Path, metavar="FILE",
                       help="a checkpoint saved earlier (`mlbus audit checkpoint > FILE`) the log must still reach")
    check.add_argument("--key", type=Path, action="append", default=[], metavar="PEM",
                       help="pin the auditor's public key (`mlbus audit key`): only the keys given are trusted, not "
                            "those on the identities topic")
    check.add_argument("--witness-key", type=Path, action="append", default=[], metavar="PEM",
                       help="pin a witness's public key (`mlbus audit key --witness`): only those given are trusted")
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=verify_command)
    head = sub.add_parser("checkpoint", help="print the latest signed checkpoint as JSON, to keep")
    head.add_argument("--shard", type=int, default=0, metavar="K",
                      help="the shard whose checkpoint to print, in a log of several (default 0)")
    head.set_defaults(run=checkpoint_command)
    key = sub.add_parser("key", help="print the auditor's public keys (PEM) from the identities topic")
    key.add_argument("--witness", action="store_true", help="the witnesses' public keys instead")
    key.set_defaults(run=key_command)
    witness = sub.add_parser("witness", help="run the witness (principal witness, its own key and state in "
                                             "MLBUS_WITNESS_DIR): co-sign each new head that extends the last one")
    witness.set_defaults(run=lambda bus, args: run_witness())
    declare = sub.add_parser("declare-witness", help="declare a witness's key on the identities topic (admin): "
                                                     "from the state directory it made its key in")
    declare.add_argument("directory", type=Path, nargs="?", metavar="DIR",
                         help="the witness's state directory, holding enrolment.json (default MLBUS_WITNESS_DIR)")
    declare.add_argument("--wait", type=float, default=0.0, metavar="S",
                         help="wait up to S seconds for the witness to make its key at its first start")
    declare.set_defaults(run=lambda bus, args: declare_witness(bus, args.directory, args.wait) or 0)
    prove = sub.add_parser("prove", help="an inclusion proof of one record (by request id or place), or a "
                                         "consistency proof between two signed heads, checkable offline")
    prove.add_argument("target", nargs="?", metavar="REQUEST_ID|PLACE",
                       help="a served prediction's request id, or a record's place SHARD:SEQUENCE (a bare SEQUENCE "
                            "is shard 0's: a log of one shard)")
    prove.add_argument("--consistency", type=int, metavar="SIZE",
                       help="prove that the latest signed head extends the one signed at this tree size")
    prove.add_argument("--shard", type=int, default=0, metavar="K",
                       help="with --consistency: the shard whose heads to prove (default 0)")
    prove.add_argument("--out", type=Path, help="write the proof here (default: standard output)")
    prove.set_defaults(run=prove_command)
    checked = sub.add_parser("check-proof", help="check a proof offline: no broker, no log, only the public key")
    checked.add_argument("proof", type=Path)
    checked.add_argument("--key", type=Path, action="append", required=True, metavar="PEM",
                         help="the auditor's public key (PEM as `mlbus audit key` prints it, or raw base64)")
    checked.add_argument("--witness-key", type=Path, action="append", default=[], metavar="PEM",
                         help="a witness's public key (`mlbus audit key --witness`): the proof's head must be "
                              "co-signed by one of those given")
    checked.set_defaults(run=check_proof_command)
    replay = sub.add_parser("replay", help="the inventory, deployments and drift alerts as they were at a time")
    replay.add_argument("--until", required=True, help="ISO 8601 time")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(run=replay_command)
    why = sub.add_parser("explain", help="everything behind a prediction: deployment, version, data, approval")
    why.add_argument("request_ids", nargs="+", metavar="REQUEST_ID")
    why.add_argument("--json", action="store_true")
    why.add_argument("--summary", action="store_true", help="one line per request")
    why.add_argument("--why", action="store_true", help="reproduce the prediction from the archived artifact and "
                     "features, check it equals the served one, and show each feature's attribution")
    why.set_defaults(run=explain_command)
    again = sub.add_parser("reproduce", help="apply every served prediction's archived artifact to its archived "
                           "features again: how many equal what was served")
    again.add_argument("model", nargs="?")
    again.add_argument("--json", action="store_true")
    again.set_defaults(run=reproduce_command)
    history = sub.add_parser("timeline", help="the decisions, in order, with the traffic between them summed up")
    history.add_argument("model", nargs="?")
    history.set_defaults(run=timeline_command)
    export = sub.add_parser("export", help="decoded records for an external auditor")
    export.add_argument("--since", default=None)
    export.add_argument("--until", default=None)
    export.add_argument("--format", choices=["jsonl"], default="jsonl")
    export.set_defaults(run=export_command)
    forget = sub.add_parser("forget", help="erase a person's personal data from the audit log (admin, signed): "
                                           "the auditor deletes their data key; verify and proofs still pass")
    forget.add_argument("entity_id", metavar="ENTITY_ID")
    forget.add_argument("--reason", required=True, help="why (e.g. the GDPR request's reference)")
    forget.set_defaults(run=forget_command)
    rebuild = sub.add_parser("rebuild-registry", help="drop the registry's database and rebuild it from audit.log")
    rebuild.set_defaults(run=rebuild_command)


def verify_command(bus: Bus, args: argparse.Namespace) -> int:
    extra = []
    if args.from_checkpoint:
        try:
            extra.append(head_of_checkpoint(json.loads(args.from_checkpoint.read_text()), str(args.from_checkpoint)))
        except (OSError, ValueError) as error:
            raise BadInput(f"--from-checkpoint {args.from_checkpoint}: {error}") from None
    report = verification(bus, extra, key_files(args.key), key_files(args.witness_key, "--witness-key"))
    if args.json:
        print_json(report)
    else:
        print("\n".join(verdict_lines(report)))
    if report["warning"]:
        info(f"warning: {report['warning']}")
    return 0 if report["intact"] else 1


def checkpoint_command(bus: Bus, args: argparse.Namespace) -> int:
    log = log_id(bus)
    kept = [c for c in checkpoints(bus) if shard_of_log_id(log, c.get("log_id") or log) == args.shard]
    if not kept:
        info("no checkpoint yet (the auditor signs one every MLBUS_AUDIT_CHECKPOINT_EVERY records, every "
             "MLBUS_AUDIT_HEAD_INTERVAL_S seconds while records come, and on stop)")
        return 1
    latest = newest_committed(bus, kept, args.shard)
    if latest is None:
        info("no checkpoint on audit.checkpoints is a head of the log's, signed by a declared log signer")
        return 1
    print_json({k: v for k, v in latest.items() if k != "frontier"})
    return 0


def key_command(bus: Bus, args: argparse.Namespace) -> int:
    keys = witness_keys(bus) if args.witness else log_signers(bus)
    if not keys:
        info("no witness key on the identities topic: `mlbus up` (as admin) declares the witness's" if args.witness
             else "no audit signing key on the identities topic: `mlbus acl apply` (as admin) declares it")
        return 1
    for public in keys.values():
        sys.stdout.write(public_pem(public).decode())
    return 0


def prove_command(bus: Bus, args: argparse.Namespace) -> int:
    if (args.target is None) == (args.consistency is None):
        raise BadInput("give either REQUEST_ID|PLACE (an inclusion proof) or --consistency SIZE")
    document, what = audit_proof(bus, args.target, args.consistency, args.shard)
    text = json.dumps(document, indent=2) + "\n"
    if args.out:
        args.out.write_text(text)
        info(f"proof written to {args.out}: {what}")
    else:
        sys.stdout.write(text)
    return 0


def check_proof_command(bus: Bus | None, args: argparse.Namespace) -> int:
    try:
        document = json.loads(args.proof.read_text())
    except (OSError, ValueError) as error:
        raise BadInput(f"{args.proof}: {error}") from None
    keys = key_files(args.key)
    holds, what = check_proof(document, keys)
    if holds and (problem := proof_witness_problem(document, keys, key_files(args.witness_key, "--witness-key"))):
        holds, what = False, f"{what}, but {problem}"
    print(("VALID: " if holds else "INVALID: ") + what)
    return 0 if holds else 1


def replay_command(bus: Bus, args: argparse.Namespace) -> int:
    until = parse_time(args.until)
    inventory, deployments, alerts = state_at(list(decoded(bus, audit_records(bus, STATE_RECORDS))),
                                                      until)
    state = {"at": until, "models": {f"{m}@{v}": {"status": e.status, "aliases": sorted(
        a for a, n in inventory.aliases.get(m, {}).items() if n == v), "decisions": [d["kind"] for d in e.history]}
        for (m, v), e in sorted(inventory.versions.items())},
        "deployments": {m: {"phase": d["phase"], "strategy": d["strategy"], "routes": d["routes"]}
                        for m, d in sorted(deployments.current.items())},
        "drift_alerts": alerts}
    if args.json:
        print_json(state)
        return 0
    print(f"state at {until.astimezone(timezone.utc).isoformat()}")
    print_table(["version", "status", "aliases", "decisions"],
                [[k, s["status"], ",".join(s["aliases"]) or "-", " → ".join(s["decisions"])]
                 for k, s in state["models"].items()])
    for model, d in state["deployments"].items():
        print(f"{model}: " + ", ".join(f"v{r['version']} {r['variant']} {r['share']:.0%}" for r in d["routes"])
              + f" ({d['strategy']} {d['phase']})")
    print(f"{len(alerts)} drift alerts on serving versions")
    return 0


def explain_command(bus: Bus, args: argparse.Namespace) -> int:
    index = AuditIndex(list(decoded(bus, audit_records(bus))))
    found = {request_id: explain_request(index, request_id) or explain_scoring(index, request_id)
             for request_id in args.request_ids}
    for request_id in [r for r, answer in found.items() if answer is None]:
        info(f"audit.log holds no served prediction for request {request_id} (nor a batch scoring)")
    if args.why:
        for answer in (a for a in found.values() if a and "prediction" in a):
            answer["why"] = explained_why(bus, index, answer)
    if args.json:
        print_json(found[args.request_ids[0]] if len(found) == 1 else found)
    elif args.summary:
        for answer in (a for a in found.values() if a and "prediction" in a):
            print(one_line(answer))
    else:
        for answer in (a for a in found.values() if a):
            print_explanation(answer) if "prediction" in answer else print_scoring(answer)
            if answer.get("why"):
                print_why(answer["why"])
    return 0 if all(found.values()) else 1


def explained_why(bus: Bus, index: AuditIndex, answer: dict) -> dict:
    """The reproduction and attributions of an explained prediction, or why there are none."""
    from services.domain import ArtifactRefused
    from services.adapters import ArtifactStore
    from .why import lookups_unreadable, unreadable, why
    p = answer["prediction"]
    versions = index.of("mlbus.ModelTrained", p["model"], p["version"])
    reason = unreadable(answer["request"])
    if versions and not reason:
        reason = lookups_unreadable(versions[0].value, p, p.get("personal_data"))
    if reason or not versions:
        return {"not_reproduced": reason or "audit.log holds no record of the version"}
    try:
        return why(versions[0].value, p, answer["request"], ArtifactStore.from_settings(bus.settings).load)
    except ArtifactRefused as error:
        return {"not_reproduced": str(error)}


def print_why(found: dict) -> None:
    if "not_reproduced" in found:
        print(f"  why: not reproduced — {found['not_reproduced']}")
        return
    again, a = found["reproduced"], found["attribution"]
    shown = f"{again['value']:g}" if again["value"] is not None else again["label"] + " (" + ", ".join(
        f"{k} {v:.4f}" for k, v in sorted(again["probabilities"].items())) + ")"
    verdict = ("EQUAL to the served one" if found["equal"]
               else f"DIFFERENT from the served one (largest gap {found['max_difference']})")
    print(f"  reproduced from artifact sha256 {found['artifact_sha256'][:16]}… and the archived features: {shown}, "
          f"{verdict}")
    subject = f" of {a['explained_class']!r}" if a["explained_class"] else ""
    total = a["baseline"] + sum(a["contributions"].values())
    print(f"  why ({a['method']}), in {a['unit']}{subject}: baseline {a['baseline']:.4f}"
          + (f" + contributions = {total:.4f} (the model's output {a['output']:.4f})" if a["additive"]
             else f"; output {a['output']:.4f} (attributions do not add up: each is the output's move when that "
                  f"feature alone takes its training reference)"))
    ranked = sorted(a["contributions"].items(), key=lambda kv: -abs(kv[1]))
    for name, value in ranked[:12]:
        print(f"    {name:<24} {value:+.4f}")
    if len(ranked) > 12:
        print(f"    … {len(ranked) - 12} more, together {sum(v for _, v in ranked[12:]):+.4f} (--json for all)")


def reproduce_command(bus: Bus, args: argparse.Namespace) -> int:
    from services.adapters import ArtifactStore
    from .why import reproduce_all
    report = reproduce_all(list(decoded(bus, audit_records(bus))), ArtifactStore.from_settings(bus.settings).load,
                           args.model)
    if args.json:
        print_json(report)
    else:
        print_table(["model", "version", "served", "equal", "different", "not reproducible", "largest gap"],
                    [[r["model"], r["version"], r["predictions"], r["equal"], len(r["different"]),
                      ", ".join(f"{n} {why}" for why, n in r["not_reproducible"].items()) or "-",
                      f"{r['max_difference']:.2g}"] for r in report])
        for r in (r for r in report if r["different"]):
            print(f"{r['model']} v{r['version']} differs for {', '.join(r['different'][:5])}")
    return 1 if any(r["different"] for r in report) else 0


def print_scoring(answer: dict) -> None:
    b, t = answer["batch_scoring"], answer["model_version"]
    print(f"batch scoring {answer['scoring_id']}: {b['input_rows']:,} rows of {b['input_batch_id'] or b['input_uri']} "
          f"(sha256 {b['input_sha256'][:16]}…) by {b['model']} v{b['version']} for {b['signer'] or b['requested_by']}, "
          f"at {b['at']:%Y-%m-%d %H:%M:%S} [audit #{place_of(b)}]")
    print(f"  predictions: {b['output_uri']} sha256 {b['output_sha256'][:16]}…, {b['output_rows']:,} rows; "
          f"artifact sha256 {b['artifact_sha256'][:16]}…, {b['cpu_seconds']:.2f} CPU s")
    if t:
        print(f"  version: run {t['run_id'][:8]} {t['estimator']} {t['hyperparameters_json']} seed {t['seed']} "
              f"[#{place_of(t)}]")
    for v in answer["data"]:
        print(f"  trained on: batch {v['batch_id'][:8]} sha256 {v['sha256'][:16]}… {v['rows']} rows, "
              f"{'passed' if v['passed'] else 'FAILED'} {v['contract']} [#{place_of(v)}]")
    for a in answer["decisions"]:
        print(f"  {a['kind']} by {a['actor']}: {a['reason']} [#{place_of(a)}]")


def place_of(cited: dict) -> str:
    """Where a cited record is: `shard:sequence` in a sharded log, its sequence in a v1 log."""
    return str(cited.get("audit_place") or cited["audit_sequence"])


def one_line(answer: dict) -> str:
    p, d = answer["prediction"], answer["deployment"] or {}
    approved = next((a["actor"] for a in answer["decisions"] if a["kind"] == "approved"), "-")
    batches = ",".join(v["batch_id"][:8] for v in answer["data"]) or "-"
    return (f"{answer['request_id']}  v{p['version']} {p['variant']}  deployment {d.get('deployment_id', '-')[:8]}  "
            f"run {(answer['model_version'] or {}).get('run_id', '-')[:8]}  data {batches}  approved by {approved}")


def print_explanation(answer: dict) -> None:
    from .why import lookup_lines
    p, t, d = answer["prediction"], answer["model_version"], answer["deployment"]
    print(f"request {answer['request_id']}: {p['label']} (score {p['score']:.3f}) by {p['model']} v{p['version']} "
          f"as {p['variant']}, at {p['at']:%Y-%m-%d %H:%M:%S} [audit #{place_of(p)}]")
    request = answer["request"] or {}
    if request.get("erased"):
        e = request["erased"]
        print(f"  features: ERASED on {e['at']:%Y-%m-%d %H:%M:%S} by {e['by']}: {e['reason']} "
              f"(entity {e['subject']}) [#{place_of(e)}]")
    elif request.get("personal_data") == "redacted":
        print(f"  features: {REDACTED}")
    elif request.get("personal_data") == "sealed":
        print("  features: sealed (audit.keys holds no key for it)")
    elif request:
        print("  features: " + ", ".join(f"{k} {v:g}" for k, v in sorted(request["features"].items())[:8])
              + (" …" if len(request["features"]) > 8 else "")
              + "".join(f", {k} {v}" for k, v in sorted((request.get("categories") or {}).items())))
    for line in lookup_lines(p, answer.get("feature_views") or []):
        print(line)
    if d:
        print(f"  deployment {d['deployment_id'][:8]} {d['strategy']} {d['phase']} by {d['actor']}: {d['reason']} "
              f"[#{place_of(d)}]")
    if t:
        print(f"  version: run {t['run_id'][:8]} {t['estimator']} {t['hyperparameters_json']} seed {t['seed']}, "
              f"artifact sha256 {t['artifact_sha256'][:16]}…, code {t['code_version']} "
              f"@ {(t['git_commit'] or '-')[:10]} "
              f"[#{place_of(t)}]")
        print("  metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(t["metrics"].items())))
    for m in answer["ensemble_members"]:
        said = m["answered"] or {}
        answer_text = f"{said['value']:g}" if said.get("value") is not None else ", ".join(
            f"{k} {v:.3f}" for k, v in sorted(said.get("probabilities", {}).items())) or "not recorded"
        weight = f"weight {said['weight']:.3f}" if said and said["weight"] else "combined by the final estimator"
        print(f"  member {m['model']} v{m['version']} artifact sha256 {m['artifact_sha256'][:16]}…: {answer_text} "
              f"({weight})" + (f" [#{place_of(m['model_version'])}]" if m["model_version"] else ""))
    for v in answer["data"]:
        print(f"  data: batch {v['batch_id'][:8]} sha256 {v['sha256'][:16]}… {v['rows']} rows, "
              f"{'passed' if v['passed'] else 'FAILED'} {v['contract']} [#{place_of(v)}]")
    for a in answer["decisions"]:
        policy = f" (policy v{a['policy_version']})" if a["policy_version"] is not None else ""
        key = content(a.get("evidence_json")).get("signer_key")
        signed = f" (signed, key {key})" if key else ""
        print(f"  {a['kind']} by {a['actor']}{signed}: {a['reason']}{policy} [#{place_of(a)}]")
    for a in answer["later_drift_alerts"][:3]:
        print(f"  later: [{a['severity']}] {a['message'][:120]} [#{place_of(a)}]")


def timeline_command(bus: Bus, args: argparse.Namespace) -> int:
    for event, line in audit_timeline(list(decoded(bus, audit_records(bus))), args.model):
        where = f"#{event.place:<7} {event.at:%m-%d %H:%M:%S}  {event.actor[:22]:<22}" if event else " " * 40
        print(f"{where}  {line[:160]}")
    return 0


def export_command(bus: Bus, args: argparse.Namespace) -> int:
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    for line in audit_export(bus, since, until):
        print_json_line(line)
    return 0


def forget_command(bus: Bus, args: argparse.Namespace) -> int:
    identity = person(args)
    erasure_id = new_id()
    send(bus, identity, "mlbus.ErasureRequested", {
        "erasure_id": erasure_id, "subject": args.entity_id, "reason": args.reason, "requested_by": identity.name,
        "requested_at": datetime.now(timezone.utc)}, key=args.entity_id, event_id=erasure_id)
    info(f"erasure {erasure_id} of {args.entity_id} requested, signed by {identity.name}: the auditor deletes the "
         f"data key when it audits the request (an admin's signature is required; a refusal is audited too)")
    print(erasure_id)
    return 0


def rebuild_command(bus: Bus, args: argparse.Namespace) -> int:
    """The registry owns its database: it rebuilds it (python -m services.registry --rebuild-from-audit)."""
    return subprocess.run([sys.executable, "-m", "services.registry", "--rebuild-from-audit"],
                          cwd=PROJECT_ROOT).returncode
