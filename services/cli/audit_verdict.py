"""What `mlbus audit verify` prints from its report (services/adapters/log_checks.verification): the verdict, a
line a shard on a sharded log, and the combined checkpoints'."""
from __future__ import annotations


def verdict_lines(report: dict) -> list[str]:
    """What `audit verify` prints: the verdict, naming the shard where a log has shards (then a line a shard);
    a v1 log's one line as it always was."""
    shards = report["shards"] if len(report.get("shards") or []) > 1 else []
    failed = next((s for s in shards if s["shard"] == report["first_bad_shard"]), None)
    shard = f"shard {failed['shard']}: " if failed else ""
    if report["intact"]:
        head = (f"intact: {report['records']} records in {len(shards)} shards" if shards else
                f"intact: {report['records']} records, root {report['root_hash']}")
        lines = [f"{head}, {report['heads_checked']} heads checked ({report['checkpoints']} on audit.checkpoints, "
                 f"{report['anchored_heads']} in the anchor)"]
    elif report["first_bad_sequence"] is None:
        lines = [f"UNTRUSTED: {shard}{report['reason']} [{report['caught_by']}] (the {report['records']} records "
                 f"match every head kept)"]
    else:
        by = f" [{report['caught_by']}]" if report["caught_by"] else ""
        where = f"shard {failed['shard']}, sequence" if failed else "sequence"
        up_to = failed["verified_up_to"] if failed else report["verified_up_to"]
        lines = [f"BROKEN at {where} {report['first_bad_sequence']}: {report['reason']}{by} (verified up to {up_to})"]
    combined = report.get("combined")
    together = [] if combined is None else [
        f"  combined checkpoints ({combined['log_id']}): {combined['checkpoints']} on audit.checkpoints, "
        f"{combined['anchored']} anchored, " + (f"PROBLEM: {combined['problem']}" if combined["problem"] else
                                                 f"each holds (newest root {(combined['newest_root'] or '-')[:16]}…)")]
    return lines + [shard_line(s) for s in shards] + together


def shard_line(shard: dict) -> str:
    """One shard's figures under a sharded log's verdict."""
    state = "intact" if shard["intact"] else "BROKEN" if shard["first_bad_sequence"] is not None else "UNTRUSTED"
    return (f"  shard {shard['shard']} ({shard['log_id']}): {state}, {shard['verified_up_to']} records verified, "
            f"root {shard['root'][:16]}…, {shard['checkpoints']} checkpoints, {shard['anchored_heads']} anchored heads")
