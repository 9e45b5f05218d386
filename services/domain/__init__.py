"""The domain code several services share, pure: no Kafka client, no clock, no files but the auditor's key (LogKey) —
the bus, services/bus, is only what every service needs to talk; services/adapters reads and writes the bus, the
stores and the anchor over this code:

- estimators — the scikit-learn allowlist, spec checks, metrics' directions
- profile, monitoring — training profiles and the monitoring block of a spec
- serving — applying a version's pipeline, the same online and offline; ensembles — versions combined
- audit — the audit chain; audited — audit.log's records as a reader holds them; pages — audit.log's pages;
  shards — which shard audits a partition;
  merkle — RFC 9162 tree hashes and proofs; tree_head — signed tree heads and the auditor's key; proofs — inclusion
  and consistency proofs checkable offline; witness — the witness's co-signatures; trust — what verify asks of the
  anchor and the witness; shard_heads — the signed checkpoint of all shard heads
- fairness — group fairness figures (fairlearn), at training and online; attributions — why one prediction
- alerts — the one builder of Alert and TrainingRequested events
- answers — explain, replay and the timeline, pure folds of the decoded audit log; kpi_report — business KPIs
  against the deployment timeline (Welch's t-tests)

Import names from the package (`from services.domain import predict`); each module loads on first use,
so a service pays only for what it uses (the auditor never loads scikit-learn). Type checkers and editors see each
name's real type from the `if TYPE_CHECKING:` imports, which tests/unit/test_domain_exports.py keeps equal to _EXPORTS.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ESTIMATORS": "estimators", "HIGHER_IS_BETTER": "estimators", "candidates": "estimators",
    "estimator_class": "estimators", "spec_problem": "estimators",
    "REFERENCE_SAMPLE": "profile", "profile_column": "profile", "profile_frame": "profile",
    "Monitoring": "monitoring", "monitoring_from_json": "monitoring", "monitoring_json": "monitoring",
    "parse_monitoring": "monitoring", "SpecMonitoring": "monitoring",
    "MISSING_CATEGORY": "serving", "predict": "serving", "request_frame": "serving", "number_frame": "serving",
    "snapshot_frame": "serving",
    "ArtifactRefused": "ensembles",
    "ChainHead": "audit", "EPOCH": "audit", "GENESIS": "audit", "canonical_bytes": "audit", "seal": "audit",
    "verify_chain": "audit", "Head": "audit", "Verified": "audit", "sealed_leaf": "audit", "Seal": "audit",
    "python_seal": "audit", "compiled_seal": "audit", "leaf": "audit", "Broken": "audit", "EncodedWalk": "audit",
    "verify_walk": "audit",
    "first_sequence": "pages", "misframed": "pages", "records_of": "pages", "source_topic": "pages",
    "Frontier": "merkle", "growing_frontier": "merkle", "BLOCK": "merkle", "Tiled": "merkle",
    "TreeHead": "tree_head", "LogKey": "tree_head",
    "key_id": "tree_head", "signature_problem": "tree_head", "chain_problem": "tree_head", "public_pem": "tree_head",
    "read_public_key": "tree_head",
    "check_proof": "proofs", "consistency_proof": "proofs", "inclusion_proof": "proofs",
    "new_key": "erasure", "redacted": "erasure", "Redaction": "erasure", "seal_value": "erasure",
    "subject_of": "erasure",
    "unseal_value": "erasure",
    "Erasure": "erasure",
    "parse_line": "tree_head", "ProofError": "merkle",
    "Cosignature": "witness", "cosignature_problem": "witness", "witness_problem": "witness",
    "cosignature_due_ms": "witness",
    "cosigned_beyond": "witness",
    "Leaves": "merkle", "consistency_path": "merkle",
    "cosign": "witness",
    "decide_witness": "witness", "WitnessDecision": "witness", "decide_combined": "witness",
    "CombinedHead": "shard_heads", "ShardHead": "shard_heads", "combined_log_id": "shard_heads",
    "shard_leaves": "shard_heads", "combined_root": "shard_heads", "sign_combined": "shard_heads",
    "combined_problem": "shard_heads", "shard_head_proof": "shard_heads", "shard_head_included": "shard_heads",
    "combined_of_checkpoint": "shard_heads", "combined_checkpoint": "shard_heads",
    "anchor_problem": "trust", "split_view": "trust", "newest_head": "trust", "pinned": "trust",
    "shard_of": "shards", "owned": "shards", "shard_log_id": "shards", "shard_of_log_id": "shards",
    "key_name": "shards", "subject_of_key": "shards", "ShardAt": "shards", "keys_of_shard": "shards",
    "shard_group": "shards", "shard_transactional_id": "shards", "shard_partitions": "shards",
    "Audited": "audited", "NOT_AUDITED": "audited", "block_hashes": "audited", "head_of_checkpoint": "audited",
    "committed_problem": "audited", "REDACTED": "audited", "personal_state": "audited", "entry_time": "audited",
    "holding": "audited",
    "alert": "alerts", "training_request": "alerts",
    "Ensemble": "ensembles", "check_members": "ensembles", "combiner": "ensembles", "is_ensemble": "ensembles",
    "load_servable": "ensembles", "member_record": "ensembles", "stack_inputs": "ensembles", "union": "ensembles",
    "compiled_forest": "forest",
    "FAIRNESS_METRICS": "fairness", "fairness_breach": "fairness", "fairness_report": "fairness",
    "group_fairness": "fairness", "groups_line": "fairness", "attribution": "attributions",
    "MISSING_GROUP": "fairness",
    "AuditIndex": "answers", "explain_request": "answers", "explain_scoring": "answers", "state_at": "answers",
    "STATE_RECORDS": "answers", "audit_timeline": "answers", "cited": "answers", "erased": "answers",
    "FeatureView": "features_views", "Feature": "features_views", "ViewsRefused": "features_views",
    "parse_views": "features_views", "views_from_yaml": "features_views", "MAX_VIEWS": "features_views",
    "MAX_FEATURES": "features_views",
    "FeatureValue": "features_windows", "SourceEvent": "features_windows", "SourceSpan": "features_windows",
    "Dropped": "features_windows", "Windows": "features_windows", "aggregate": "features_windows",
    "source_event": "features_windows", "source_places": "features_windows",
    "Lookup": "features_lookups", "LabelRow": "features_lookups", "as_of_join": "features_lookups",
    "online_read": "features_lookups", "column_name": "features_lookups", "time_and_place": "features_lookups",
    "ViewColumns": "features_join", "columns_of": "features_join", "UsedValues": "features_join",
    "value_json": "features_join", "sources_json": "features_join", "canonical_json": "features_join",
    "kind_of": "features_join", "number_of": "features_join", "TEXT_VALUE": "features_join",
    "LookupPlan": "features_serving", "LookupRefused": "features_serving", "PlanRefused": "features_serving",
    "completed": "features_serving", "look_up": "features_serving", "lookup_plan": "features_serving",
    "stored_value_problem": "features_serving", "ahead_of_clock": "features_serving", "lateness_of": "features_serving",
    "MAX_AHEAD_MS": "features_serving",
    "wanted": "features_serving", "entity_problem": "features_serving",
    "FeatureSetRefused": "features_training", "FeatureSettings": "features_training",
    "TrainingSet": "features_training", "parse_settings": "features_training", "reached_positions": "features_training",
    "settings_problem": "features_training",
    "training_set": "features_training", "until_from_json": "features_training", "until_json": "features_training",
    "Mismatch": "features_monitoring", "Skew": "features_monitoring", "skew": "features_monitoring",
    "view_subject": "features_monitoring", "views_used": "features_monitoring", "canonical_view": "features_views",
    "view_json_bytes": "features_views", "view_identifier": "features_views",
    "before_after": "kpi_report", "by_variant": "kpi_report", "for_model": "kpi_report", "kpi_compare": "kpi_report",
    "serving_changes": "kpi_report", "KPI_CONFIDENCE": "kpi_report",
}
_RENAMED = {"verify_chain": "verify", "check_proof": "check", "consistency_proof": "consistency",
            "inclusion_proof": "inclusion", "newest_head": "newest",
            "decide_witness": "decide", "WitnessDecision": "Decision",
            "AuditIndex": "Index", "explain_request": "explain", "audit_timeline": "timeline",
            "kpi_compare": "compare", "KPI_CONFIDENCE": "CONFIDENCE", "canonical_view": "canonical",
            "view_json_bytes": "canonical_bytes", "view_identifier": "IDENTIFIER"}
__all__ = sorted(_EXPORTS)  # noqa: PLE0605 (a list: sorted() of the names exported lazily)

if TYPE_CHECKING:
    from .alerts import alert, training_request
    from .answers import (cited, erased, explain as explain_request, explain_scoring, Index as AuditIndex, state_at,
                          STATE_RECORDS, timeline as audit_timeline)
    from .attributions import attribution
    from .audit import (Broken, canonical_bytes, ChainHead, compiled_seal, EncodedWalk, EPOCH, GENESIS, Head, leaf,
                        python_seal, Seal, seal, sealed_leaf, Verified, verify as verify_chain, verify_walk)
    from .audited import (Audited, block_hashes, committed_problem, entry_time, head_of_checkpoint, holding,
                          NOT_AUDITED, personal_state, REDACTED)
    from .ensembles import (ArtifactRefused, check_members, combiner, Ensemble, is_ensemble, load_servable,
                            member_record, stack_inputs, union)
    from .erasure import Erasure, new_key, redacted, Redaction, seal_value, subject_of, unseal_value
    from .estimators import candidates, estimator_class, ESTIMATORS, HIGHER_IS_BETTER, spec_problem
    from .fairness import fairness_breach, FAIRNESS_METRICS, fairness_report, group_fairness, groups_line, MISSING_GROUP
    from .features_join import (canonical_json, columns_of, kind_of, number_of, sources_json, TEXT_VALUE, UsedValues,
                                value_json, ViewColumns)
    from .features_lookups import as_of_join, column_name, LabelRow, Lookup, online_read, time_and_place
    from .features_monitoring import Mismatch, Skew, skew, view_subject, views_used
    from .features_views import (canonical_bytes as view_json_bytes, IDENTIFIER as view_identifier, MAX_FEATURES,
                                 MAX_VIEWS)
    from .features_views import canonical as canonical_view, Feature, FeatureView, parse_views, views_from_yaml, \
        ViewsRefused
    from .features_windows import (aggregate, Dropped, FeatureValue, source_event, source_places, SourceEvent,
                                   SourceSpan, Windows)
    from .features_serving import (ahead_of_clock, completed, entity_problem, lateness_of, look_up, lookup_plan,
                                   LookupPlan, LookupRefused, MAX_AHEAD_MS, PlanRefused, stored_value_problem, wanted)
    from .features_training import (FeatureSetRefused, FeatureSettings, parse_settings, reached_positions,
                                    settings_problem, training_set, TrainingSet, until_from_json, until_json)
    from .forest import compiled_forest
    from .kpi_report import (before_after, by_variant, compare as kpi_compare, CONFIDENCE as KPI_CONFIDENCE, for_model,
                             serving_changes)
    from .merkle import BLOCK, consistency_path, Frontier, growing_frontier, Leaves, ProofError, Tiled
    from .monitoring import Monitoring, monitoring_from_json, monitoring_json, parse_monitoring, SpecMonitoring
    from .pages import first_sequence, misframed, records_of, source_topic
    from .profile import profile_column, profile_frame, REFERENCE_SAMPLE
    from .proofs import check as check_proof, consistency as consistency_proof, inclusion as inclusion_proof
    from .shards import (key_name, keys_of_shard, owned, shard_group, shard_log_id, shard_of, shard_of_log_id,
                         shard_partitions, shard_transactional_id, ShardAt, subject_of_key)
    from .serving import MISSING_CATEGORY, number_frame, predict, request_frame, snapshot_frame
    from .tree_head import (chain_problem, key_id, LogKey, parse_line, public_pem, read_public_key, signature_problem,
                            TreeHead)
    from .trust import anchor_problem, newest as newest_head, pinned, split_view
    from .shard_heads import (combined_checkpoint, combined_log_id, combined_of_checkpoint, combined_problem,
                              combined_root, CombinedHead, shard_head_included, shard_head_proof, shard_leaves,
                              ShardHead, sign_combined)
    from .witness import (cosign, Cosignature, cosignature_due_ms, cosignature_problem, cosigned_beyond,
                          decide as decide_witness,
                          decide_combined, Decision as WitnessDecision, witness_problem)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    return getattr(module, _RENAMED.get(name, name))
