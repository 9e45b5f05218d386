"""The domain code several services share (the bus, services/bus, is only what every service needs to talk):

- estimators — the scikit-learn allowlist, spec checks, metrics' directions
- profile, monitoring — training profiles and the monitoring block of a spec
- datastore, datasets, artifacts — data snapshots and model files: content-addressed, confined, size-capped
- serving — applying a version's pipeline, the same online and offline; ensembles — versions combined
- audit, audit_log — the audit chain and reading audit.log; merkle — RFC 9162 tree hashes and proofs;
  tree_head — signed tree heads and the auditor's key; anchor — the heads kept outside Kafka; proofs — inclusion
  and consistency proofs checkable offline; witness, witness_log — the witness's co-signatures; trust — what
  verify asks of the anchor and the witness
- fairness — group fairness figures (fairlearn), at training and online; attributions — why one prediction
- alerts — the one builder of Alert and TrainingRequested events
- answers — explain, replay and the timeline, pure folds of the decoded audit log; log_checks — what verify, prove
  and export answer from audit.log; kpi_report — business KPIs against the deployment timeline (Welch's t-tests)

Import names from the package (`from services.domain import ArtifactStore`); each module loads on first use,
so a service pays only for what it uses (the auditor never loads scikit-learn).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ESTIMATORS": "estimators", "HIGHER_IS_BETTER": "estimators", "candidates": "estimators",
    "estimator_class": "estimators", "spec_problem": "estimators",
    "REFERENCE_SAMPLE": "profile", "profile_column": "profile", "profile_frame": "profile",
    "Monitoring": "monitoring", "monitoring_from_json": "monitoring", "monitoring_json": "monitoring",
    "parse_monitoring": "monitoring", "SpecMonitoring": "monitoring",
    "DataFileError": "blobs", "SnapshotStore": "datastore", "local_path": "blobs", "BlobStore": "blobs",
    "file_format": "datastore", "sha256_file": "datastore", "store_snapshot": "datastore",
    "publish_batch": "datasets",
    "MISSING_CATEGORY": "serving", "predict": "serving", "request_frame": "serving", "number_frame": "serving",
    "snapshot_frame": "serving",
    "ArtifactRefused": "artifacts", "ArtifactStore": "artifacts", "save_model": "artifacts",
    "ChainHead": "audit", "EPOCH": "audit", "GENESIS": "audit", "canonical_bytes": "audit", "seal": "audit",
    "verify_chain": "audit", "Head": "audit", "Verified": "audit", "sealed_leaf": "audit", "Seal": "audit",
    "python_seal": "audit", "compiled_seal": "audit", "leaf": "audit",
    "Frontier": "merkle", "BLOCK": "merkle", "Tiled": "merkle", "TreeHead": "tree_head", "LogKey": "tree_head",
    "key_id": "tree_head", "signature_problem": "tree_head", "anchored_heads": "audit_log", "public_pem": "tree_head",
    "read_public_key": "tree_head",
    "check_proof": "proofs", "consistency_proof": "proofs", "inclusion_proof": "proofs",
    "new_key": "erasure", "redacted": "erasure", "Redaction": "erasure", "seal_value": "erasure",
    "subject_of": "erasure",
    "unseal_value": "erasure",
    "Erasure": "erasure",
    "Anchor": "anchor", "AnchorError": "anchor", "parse_line": "anchor", "ProofError": "merkle",
    "Cosignature": "witness", "cosignature_problem": "witness", "witness_problem": "witness",
    "cosigned_beyond": "witness",
    "cosignatures": "witness_log", "witness_keys": "witness_log", "declare_witness_key": "witness_log",
    "proof_tree": "witness_log", "newest_cosigned": "witness_log",
    "Leaves": "merkle", "consistency_path": "merkle",
    "WITNESS_ENROLMENT_FILE": "witness_log", "WITNESS_PUBLIC_KEY_FILE": "witness_log", "cosign": "witness",
    "decide_witness": "witness", "WitnessDecision": "witness",
    "anchor_problem": "trust", "split_view": "trust", "newest_head": "trust", "pinned": "trust",
    "Audited": "audit_log", "audit_records": "audit_log", "verify_log": "audit_log", "checkpoints": "audit_log",
    "decoded": "audit_log",
    "log_id": "audit_log", "declare_log_key": "audit_log", "audited_topics": "audit_log", "NOT_AUDITED": "audit_log",
    "records_between": "audit_log", "block_hashes": "audit_log", "data_keys": "audit_log", "erasures": "audit_log",
    "kept_heads": "audit_log", "log_signers": "audit_log",
    "head_of_checkpoint": "audit_log",
    "REDACTED": "audit_log", "keys_refused": "audit_log", "personal_state": "audit_log",
    "alert": "alerts", "training_request": "alerts",
    "Ensemble": "ensembles", "check_members": "ensembles", "combiner": "ensembles", "is_ensemble": "ensembles",
    "load_servable": "ensembles", "member_record": "ensembles", "stack_inputs": "ensembles", "union": "ensembles",
    "compiled_forest": "forest",
    "FAIRNESS_METRICS": "fairness", "fairness_breach": "fairness", "fairness_report": "fairness",
    "group_fairness": "fairness", "groups_line": "fairness", "attribution": "attributions",
    "MISSING_GROUP": "fairness",
    "AuditIndex": "answers", "explain_request": "answers", "explain_scoring": "answers", "state_at": "answers",
    "STATE_RECORDS": "answers", "audit_timeline": "answers", "cited": "answers", "erased": "answers",
    "before_after": "kpi_report", "by_variant": "kpi_report", "for_model": "kpi_report", "kpi_compare": "kpi_report",
    "serving_changes": "kpi_report", "KPI_CONFIDENCE": "kpi_report",
    "verification": "log_checks", "audit_proof": "log_checks", "audit_export": "log_checks",
}
_RENAMED = {"verify_chain": "verify", "check_proof": "check", "consistency_proof": "consistency",
            "inclusion_proof": "inclusion", "newest_head": "newest",
            "WITNESS_ENROLMENT_FILE": "ENROLMENT_FILE", "WITNESS_PUBLIC_KEY_FILE": "PUBLIC_KEY_FILE",
            "decide_witness": "decide", "WitnessDecision": "Decision",
            "AuditIndex": "Index", "explain_request": "explain", "audit_timeline": "timeline",
            "kpi_compare": "compare", "KPI_CONFIDENCE": "CONFIDENCE", "audit_proof": "proof",
            "audit_export": "exported"}
__all__ = sorted(_EXPORTS)  # noqa: PLE0605 (a list: sorted() of the names exported lazily)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    return getattr(module, _RENAMED.get(name, name))
