"""mlbus features define | list | show | get | history: feature views (issue 36, docs/explanation/feature-store.md)."""
from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from services.bus.context import Bus
from services.bus.errors import BadInput
from services.bus.identity import SPEC_SIGNERS, act_refusal, act_verifier
from services.bus.replay import read_topics
from services.domain import EPOCH, FeatureView, ViewsRefused, online_read, views_from_yaml

from .acts import person, send
from .output import info, print_json, print_table

VIEWS_TOPIC = "features.views"


def register(commands: argparse._SubParsersAction) -> None:
    features = commands.add_parser("features", help="feature views: define them, see them, look values up")
    sub = features.add_subparsers(dest="features_command", required=True)
    define = sub.add_parser("define", help="publish the views of a YAML file, signed (a data scientist)")
    define.add_argument("file", type=Path)
    define.set_defaults(run=define_command)
    listing = sub.add_parser("list", help="every view: its newest version, source, features")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=list_command)
    show = sub.add_parser("show", help="a view's definition and every version of it")
    show.add_argument("view")
    show.add_argument("--json", action="store_true")
    show.set_defaults(run=show_command)
    get = sub.add_parser("get", help="an entity's features now, from the online store, as serving sees them")
    get.add_argument("view")
    get.add_argument("entity")
    get.add_argument("--version", help="a version (or its first digits); default: the newest")
    get.add_argument("--json", action="store_true")
    get.set_defaults(run=get_command)
    history = sub.add_parser("history", help="every value an entity had, from the offline store")
    history.add_argument("view")
    history.add_argument("entity")
    history.add_argument("--version", help="a version (or its first digits); default: the newest")
    history.add_argument("--feature", help="this feature only")
    history.add_argument("--json", action="store_true")
    history.set_defaults(run=history_command)


def defined_views(bus: Bus) -> list[tuple[FeatureView, dict]]:
    from services.adapters import view_from_record      # the stores' module loads SQLModel and pandas: ~0.6 s of
                                                        # every mlbus command's start-up when imported at the top
    """Every view version on features.views that a data scientist signed and that parses, in the order defined,
    with its record: what the featurizer took (it dead-lettered the others, with why)."""
    verify = act_verifier(bus)
    found = []
    for received in read_topics(bus, [VIEWS_TOPIC]):
        if act_refusal(received, verify, SPEC_SIGNERS["mlbus.FeatureViewDefined"]) is not None:
            continue
        try:
            found.append((view_from_record(received.value), received.value))
        except BadInput:
            continue
    return found


def newest(bus: Bus, name: str, version: str | None = None) -> tuple[FeatureView, dict]:
    versions = [(view, record) for view, record in defined_views(bus) if view.name == name]
    if version:
        versions = [(view, record) for view, record in versions if view.version.startswith(version)]
    if not versions:
        raise BadInput(f"no view {name!r}" + (f" of version {version}" if version else "") +
                       " on features.views (`mlbus features list`)")
    return versions[-1]


def define_command(bus: Bus, args: argparse.Namespace) -> int:
    from services.adapters import views_key, views_record
    try:
        text = args.file.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput(f"cannot read {args.file}: {error}") from None
    try:
        views = views_from_yaml(text)
    except ViewsRefused as refused:
        raise BadInput(f"{args.file}: " + "\n  ".join(["not a definition:", *refused.reasons])) from None
    sources = {t.name for t in bus.catalogue.consumed_by("featurizer")} - {VIEWS_TOPIC}
    wrong = [f"{v.name}: source {v.source_topic or 'dataset ' + str(v.source_dataset)} is not a topic the "
             f"featurizer consumes ({', '.join(sorted(sources))})" for v in views if v.source_topic not in sources]
    if wrong:
        raise BadInput("\n  ".join([f"{args.file}:", *wrong]))
    actor = f"cli:{person(args).name}"
    known = {view.version for view, _ in defined_views(bus)}
    for view in views:
        if view.version in known:
            info(f"{view.name}: version {view.version[:12]} is defined already (unchanged)")
            continue
        send(bus, args.identity, "mlbus.FeatureViewDefined", views_record(view, actor), views_key(view))
        kind = f" kind {view.source_kind}" if view.source_kind else ""
        info(f"defined {view.name} version {view.version[:12]}: {len(view.features)} features of "
             f"{view.entity} from {view.source_topic}{kind}, TTL {view.ttl_ms / 1000:g} s")
    return 0


def _summary(view: FeatureView, record: dict, versions: int) -> dict:
    return {"view": view.name, "version": view.version, "entity": view.entity, "source": view.source_topic,
            "kind": view.source_kind, "features": [f.name for f in view.features], "ttl_ms": view.ttl_ms,
            "owner": view.owner, "defined_by": record["defined_by"], "defined_at": str(record["defined_at"]),
            "versions": versions}


def list_command(bus: Bus, args: argparse.Namespace) -> int:
    by_name: dict[str, list[tuple[FeatureView, dict]]] = {}
    for view, record in defined_views(bus):
        by_name.setdefault(view.name, []).append((view, record))
    rows = [_summary(*found[-1], len(found)) for _, found in sorted(by_name.items())]
    if args.json:
        print_json(rows)
    else:
        print_table(["view", "version", "entity", "source", "features", "owner", "versions"],
                    [[r["view"], r["version"][:12], r["entity"], r["source"] + (f" ({r['kind']})" if r["kind"] else ""),
                      ", ".join(r["features"]), r["owner"], r["versions"]] for r in rows])
    return 0


def show_command(bus: Bus, args: argparse.Namespace) -> int:
    versions = [(view, record) for view, record in defined_views(bus) if view.name == args.view]
    if not versions:
        raise BadInput(f"no view {args.view!r} on features.views (`mlbus features list`)")
    view, record = versions[-1]
    shown = {**_summary(view, record, len(versions)), "description": view.description,
             "lateness_ms": view.lateness_ms, "event_time": view.event_time,
             "definition": [{"name": f.name, "aggregate": f.aggregate, "field": f.field, "window_ms": f.window_ms,
                             "slide_ms": f.slide_ms} for f in view.features],
             "all_versions": [{"version": v.version, "defined_by": r["defined_by"], "defined_at": str(r["defined_at"])}
                              for v, r in versions]}
    if args.json:
        print_json(shown)
        return 0
    print(f"{view.name} version {view.version}\n  entity {view.entity}, source {view.source_topic}"
          f"{' kind ' + view.source_kind if view.source_kind else ''}, event time "
          f"{view.event_time or '(the record time)'}, lateness {view.lateness_ms} ms, TTL {view.ttl_ms} ms, "
          f"owner {view.owner}")
    print_table(["feature", "aggregate", "field", "window ms", "slide ms"],
                [[f.name, f.aggregate, f.field or "", f.window_ms or "", f.slide_ms or ""] for f in view.features])
    print_table(["version", "defined by", "defined at"],
                [[v["version"][:12], v["defined_by"], v["defined_at"]] for v in shown["all_versions"]])
    return 0


def _now_ms() -> int:
    return int((datetime.now(timezone.utc) - EPOCH).total_seconds() * 1000)


def get_command(bus: Bus, args: argparse.Namespace) -> int:
    from services.adapters import OnlineStore
    view, _ = newest(bus, args.view, args.version)
    store = OnlineStore(bus.settings.storage.features_database_url)
    lookups = online_read(view, args.entity, store.get(view.name, view.version, args.entity), _now_ms())
    rows = [{"feature": lk.feature, "value": lk.value, "age_ms": lk.age_ms, "missing": lk.missing,
             "reason": lk.reason, "version": lk.view_version} for lk in lookups]
    if args.json:
        print_json({"view": view.name, "version": view.version, "entity": args.entity, "features": rows})
    else:
        print_table(["feature", "value", "age", "why missing"],
                    [[r["feature"], "" if r["missing"] else r["value"],
                      "" if r["age_ms"] is None else f"{r['age_ms'] / 1000:.1f} s", r["reason"]] for r in rows])
    return 0


def history_command(bus: Bus, args: argparse.Namespace) -> int:
    from services.adapters import OfflineStore
    view, _ = newest(bus, args.view, args.version)
    values = [v for v in OfflineStore(bus.settings.storage.features_offline).read(view.name, view.version)
              if v.entity == args.entity and (not args.feature or v.feature == args.feature)]
    rows = [{"feature": v.feature, "event_ms": v.event_ms, "window_start_ms": v.window_start_ms, "value": v.value,
             "sources": [f"{s.topic}:{s.partition}@{s.first_offset}-{s.last_offset}" for s in v.sources]}
            for v in values]
    if args.json:
        print_json({"view": view.name, "version": view.version, "entity": args.entity, "values": rows})
    else:
        print_table(["event time", "feature", "value", "window start", "from"],
                    [[_shown_time(r["event_ms"]), r["feature"], r["value"],
                      "" if r["window_start_ms"] is None else _shown_time(r["window_start_ms"]),
                      " ".join(r["sources"])] for r in rows])
    return 0


def _shown_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds")
