"""The adapters several services share: domain code (services/domain, pure) read from and written to the bus
(services/bus) and to files — what a service would otherwise keep in its own adapters.py, were it one service's:

- audit_log — reading audit.log back (its records, verified as read, by sequence range; the events decoded, personal
  data opened with audit.keys), its checkpoints and the heads kept, the auditor's key declared
- log_checks — what `audit verify`, `audit prove` and `audit export` answer from audit.log
- witness_log — the witness's co-signatures on audit.witness, its key on the identities topic, the tree a proof needs
- datasets — a data file snapshotted into the data store and announced on data.batches
- blobs, datastore, artifacts — the stores (a folder or fsspec URL): data snapshots and model files, content-addressed,
  confined, size-capped, re-hashed at every read
- anchor — the signed heads kept outside Kafka (a file per log, or an object per head)
- shard_lag — how far the auditor's shards are behind, each in its own group's committed offsets
- schema_registry — every topic's value schema registered in a schema registry's Confluent-compatible API
  (BACKWARD enforced there), schemas looked up by id

Import names from the package (`from services.adapters import decoded`); each module loads on first use (a
service that publishes data does not load the audit readers). Type checkers see each name's real type from the
`if TYPE_CHECKING:` imports, which tests/unit/test_domain_exports.py keeps equal to _EXPORTS.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "anchored_heads": "audit_log", "audit_records": "audit_log", "audited_topics": "audit_log",
    "checkpoints": "audit_log", "data_keys": "audit_log", "declare_log_key": "audit_log", "decoded": "audit_log",
    "erasures": "audit_log", "kept_heads": "audit_log", "keys_refused": "audit_log", "log_id": "audit_log",
    "log_signers": "audit_log", "records_between": "audit_log", "verify_log": "audit_log",
    "shard_count": "audit_log", "committed_chain_hash": "audit_log",
    "verification": "log_checks", "audit_proof": "log_checks", "audit_export": "log_checks",
    "cosignatures": "witness_log", "witness_keys": "witness_log", "declare_witness_key": "witness_log",
    "proof_tree": "witness_log", "newest_cosigned": "witness_log", "newest_committed": "witness_log",
    "WITNESS_ENROLMENT_FILE": "witness_log", "WITNESS_PUBLIC_KEY_FILE": "witness_log",
    "publish_batch": "datasets",
    "BlobStore": "blobs", "DataFileError": "blobs", "local_path": "blobs",
    "Snapshot": "datastore", "SnapshotStore": "datastore", "count_rows": "datastore", "file_format": "datastore",
    "sha256_file": "datastore", "store_snapshot": "datastore",
    "ArtifactStore": "artifacts", "save_model": "artifacts",
    "Anchor": "anchor", "AnchorError": "anchor",
    "auditor_lag": "shard_lag",
    "OnlineStore": "feature_store", "value_from_record": "feature_store", "view_from_record": "feature_store",
    "OfflineStore": "offline_store", "snapshot_digest": "offline_store", "value_record": "feature_store",
    "views_record": "feature_store", "online_key": "feature_store", "views_key": "feature_store",
    "RegistryAdmin": "schema_registry", "registry_admin": "schema_registry", "register_all": "schema_registry",
    "check_all": "schema_registry", "topic_schemas": "schema_registry",
}
_RENAMED = {"WITNESS_ENROLMENT_FILE": "ENROLMENT_FILE", "WITNESS_PUBLIC_KEY_FILE": "PUBLIC_KEY_FILE",
            "audit_proof": "proof", "audit_export": "exported"}
__all__ = sorted(_EXPORTS)  # noqa: PLE0605 (a list: sorted() of the names exported lazily)

if TYPE_CHECKING:
    from .anchor import Anchor, AnchorError
    from .artifacts import ArtifactStore, save_model
    from .audit_log import (anchored_heads, audit_records, audited_topics, checkpoints, committed_chain_hash, data_keys,
                            declare_log_key, decoded, erasures, kept_heads, keys_refused, log_id, log_signers,
                            records_between, shard_count, verify_log)
    from .blobs import BlobStore, DataFileError, local_path
    from .datasets import publish_batch
    from .feature_store import (online_key, OnlineStore, value_from_record, value_record, view_from_record, views_key,
                                views_record)
    from .datastore import count_rows, file_format, sha256_file, Snapshot, SnapshotStore, store_snapshot
    from .log_checks import exported as audit_export, proof as audit_proof, verification
    from .offline_store import OfflineStore, snapshot_digest
    from .schema_registry import check_all, register_all, registry_admin, RegistryAdmin, topic_schemas
    from .shard_lag import auditor_lag
    from .witness_log import (cosignatures, declare_witness_key, ENROLMENT_FILE as WITNESS_ENROLMENT_FILE,
                              newest_committed, newest_cosigned, proof_tree, PUBLIC_KEY_FILE as WITNESS_PUBLIC_KEY_FILE,
                              witness_keys)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
    return getattr(module, _RENAMED.get(name, name))
