"""mlbus backup DEST | restore SRC: everything needed to rebuild a cluster — every topic's records with their
offsets and headers (the identities and audit.keys among them), the consumer groups' positions, the audit
anchor, the auditor's key, data snapshots and model artifacts — and the rebuild itself (admin)."""
from __future__ import annotations

import argparse
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from services.bus.backup import (BACKUP_FORMAT, RestoreRefused, back_up_topics, check_restorable, restore_topics,
                                 sha256_file)
from services.bus.context import Bus
from services.bus.errors import BadInput
from services.adapters import BlobStore

from .output import info

# Taken in this order: the anchor and the key before the topics (a head kept must not cover records the
# backup lacks), data and artifacts after (a record kept must not name a file the backup lacks).
BEFORE_TOPICS, AFTER_TOPICS = ("anchor", "keys", "notifier"), ("data", "artifacts")


def register(commands: argparse._SubParsersAction) -> None:
    backup = commands.add_parser(
        "backup", help="write a consistent backup: topics with offsets and headers, group positions, the audit "
                       "anchor and key, snapshots and artifacts (admin)",
        description="Write DEST (a new or empty folder): manifest.json, topics/<topic>/<partition>.avro (each "
                    "record's bytes, headers, timestamp and offset), files/. It holds the auditor's private key "
                    "and the data keys of audit.keys: keep it as safe as the cluster.")
    backup.add_argument("dest", type=Path, help="a new or empty folder")
    backup.set_defaults(run=backup_command)
    restore = commands.add_parser(
        "restore", help="rebuild a fresh cluster from a backup: files first, then every topic and group position "
                        "(admin; then run `mlbus acl apply`)",
        description="Restore SRC onto this cluster and namespace, whose topics must be empty: every file is "
                    "checked against the manifest's sha256 first, and nothing is written if one differs.")
    restore.add_argument("src", type=Path, help="a folder `mlbus backup` wrote")
    restore.set_defaults(run=restore_command)


def file_sets(bus: Bus) -> dict[str, Path]:
    """What the backup keeps outside Kafka, by name → where it lives here (a folder or one file). Stores at an
    fsspec URL elsewhere (s3://…) are already off this machine: their own versioning keeps them."""
    settings = bus.settings
    sets = {"keys": settings.audit.key, "notifier": settings.services.notifier_config}
    for name, location in (("data", settings.storage.data_store), ("artifacts", settings.storage.artifacts_store),
                           ("anchor", settings.audit.anchor)):
        root = BlobStore(location).local_root()
        if root is not None:
            sets[name] = root
    return sets


def files_under(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def copy_out(name: str, root: Path, dest: Path) -> dict[str, str]:
    """Copy one file set into dest/files/<name>/; relative path → sha256."""
    kept = {}
    for path in files_under(root):
        relative = path.name if root.is_file() else str(path.relative_to(root))
        target = dest / "files" / name / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        kept[relative] = sha256_file(target)
    return kept


def backup_command(bus: Bus, args: argparse.Namespace) -> int:
    dest: Path = args.dest
    if dest.exists() and any(dest.iterdir()):
        raise BadInput(f"{dest} is not empty: a backup goes into a new or empty folder")
    private_folder(dest)            # from the start: nobody else enters it while the backup is written
    sets = file_sets(bus)
    started = datetime.now(timezone.utc)
    files = {name: copy_out(name, sets[name], dest) for name in BEFORE_TOPICS if name in sets}
    info("topics …")
    kept = back_up_topics(bus, dest, progress=lambda line: info(f"  {line}"))
    files |= {name: copy_out(name, sets[name], dest) for name in AFTER_TOPICS if name in sets}
    manifest = {"format": BACKUP_FORMAT, "started_at": started.isoformat(),
                "finished_at": datetime.now(timezone.utc).isoformat(), "namespace": bus.settings.connection.namespace,
                "single_files": [name for name in files if sets[name].is_file()], **kept, "files": files}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")     # last: its presence = complete
    keep_private(dest)
    records = sum(f["records"] for t in kept["topics"].values() for f in t["files"])
    info(f"backup written to {dest}: {records:,} records in {sum(len(t['files']) for t in kept['topics'].values())} "
         f"partitions, {len(kept['groups'])} consumer groups, {sum(map(len, files.values()))} files")
    return 0


def private_folder(path: Path) -> None:
    """A folder only its owner may enter: a backup holds the auditor's private key and audit.keys' data keys."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


def keep_private(root: Path) -> None:
    """Every folder under root 0700 and every file 0600 (copies keep their source's mode, writes the umask's)."""
    for path in root.rglob("*"):
        os.chmod(path, 0o700 if path.is_dir() else 0o600)


def restore_command(bus: Bus, args: argparse.Namespace) -> int:
    manifest_path = args.src / "manifest.json"
    if not manifest_path.is_file():
        raise BadInput(f"{args.src} holds no manifest.json: not a finished `mlbus backup`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as error:
        raise BadInput(f"{manifest_path} is not JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BadInput(f"{manifest_path}: format {found!r}, this mlbus reads {BACKUP_FORMAT}")
    sets = file_sets(bus)
    try:
        copies = planned_copies(args.src, manifest, sets)
        partitions = check_restorable(bus, args.src, manifest)
    except RestoreRefused as error:
        raise BadInput(f"restore refused, nothing written: {error}") from None
    except (KeyError, TypeError, AttributeError) as error:
        raise BadInput(f"restore refused, nothing written: {manifest_path} is malformed ({error!r})") from None
    for source, target in copies:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    info(f"{len(copies)} files restored; topics …")
    records = restore_topics(bus, args.src, manifest, partitions, progress=lambda line: info(f"  {line}"))
    info(f"restored {records:,} records and {len(manifest['groups'])} consumer groups' positions from {args.src} "
         "(next: `mlbus acl apply` for this cluster's principals and ACLs, then start the services)")
    return 0


def planned_copies(src: Path, manifest: dict, sets: dict[str, Path]) -> list[tuple[Path, Path]]:
    """(backup file, where it goes) for every file, all checked before any is copied: each must match its
    sha256, and no different file may be in its place already."""
    copies = []
    for name, kept in manifest["files"].items():
        if name not in sets:
            continue                              # e.g. an anchor that is an fsspec URL here
        for relative, sha256 in kept.items():
            if Path(relative).is_absolute() or ".." in Path(relative).parts:
                raise RestoreRefused(f"files/{name}: {relative!r} points outside its folder")
            source = src / "files" / name / relative
            target = sets[name] if name in manifest["single_files"] else sets[name] / relative
            if not source.is_file() or sha256_file(source) != sha256:
                raise RestoreRefused(f"files/{name}/{relative} is missing or does not match its sha256")
            if target.exists() and sha256_file(target) != sha256:
                raise RestoreRefused(f"{target} exists and differs from the backup's copy: restore onto a fresh "
                                     "machine, or move it away")
            copies.append((source, target))
    return copies
