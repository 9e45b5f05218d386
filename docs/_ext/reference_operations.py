"""Reference pages for operators, generated from the code: every field of `Settings` with the environment variable
that sets it (read from `Settings.from_env`), and every Prometheus metric a service constructs."""
from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

from reference_pages import ROOT, table

SETTINGS_SOURCE = ROOT / "services" / "bus" / "settings.py"
# What a field means where settings.py carries no comment on it (a comment there wins).
MEANINGS = {
    "home": "the project's root: topics.yaml and schemas/ are read from here",
    "var_dir": "local state: broker, logs, pids, database, data, artifacts, keys",
    "bootstrap_env": "an existing Kafka cluster (host:port,...); unset: the local broker scripts/kafka started",
    "namespace": "prefix of every physical topic and consumer group (tenants, tests)",
    "instance": "this copy's id when a service is scaled out (part of its transactional id)",
    "replication": "replication factor of every topic (a real cluster: 3); unset: topics.yaml's",
    "kafka_overrides": "any librdkafka property: MLBUS_KAFKA_SASL_PASSWORD sets sasl.password (kept secret in logs); "
                       "it overrides what mlbus sets itself",
    "database_url": "the registry's database, any SQLAlchemy URL (SQLite or PostgreSQL); kept secret in logs",
    "contracts_dir": "the data contracts' folder (one Avro record schema per dataset)",
    "log_format": "json, console, or auto (console in a terminal)",
    "log_level": "the lowest level logged",
    "identity_kafka": "the broker credentials of the person the CLI acts as (from their identity file)",
}
DERIVED = {"kafka_overrides": "MLBUS_KAFKA_*", "identity_principal": "(your identity file: MLBUS_IDENTITY)",
           "identity_kafka": "(your identity file: MLBUS_IDENTITY)"}


def field_comments() -> dict[str, str]:
    """The comment on each Settings field's line in settings.py."""
    lines = SETTINGS_SOURCE.read_text().splitlines()
    tree = ast.parse(SETTINGS_SOURCE.read_text())
    [settings] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    found = {}
    for node in settings.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.lineno - 1]
            if "#" in line:
                found[node.target.id] = line.split("#", 1)[1].strip()
    return found


def environment_names() -> dict[str, list[str]]:
    """Field → the MLBUS_* variables its expression in Settings.from_env reads."""
    tree = ast.parse(SETTINGS_SOURCE.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id == "cls"]
    if len(calls) != 1:
        raise RuntimeError("docs: Settings.from_env no longer builds one cls(...): teach docs/_ext/"
                           "reference_operations.py the new shape")
    names, lets = {}, local_names(tree)
    for keyword in calls[0].keywords:
        found = [c.value for c in ast.walk(keyword.value) if isinstance(c, ast.Constant)
                 and isinstance(c.value, str) and c.value.startswith("MLBUS_")]
        for name in (n.id for n in ast.walk(keyword.value) if isinstance(n, ast.Name)):
            found += lets.get(name, [])
        names[keyword.arg] = list(dict.fromkeys(found))
    return names


def local_names(tree: ast.AST) -> dict[str, list[str]]:
    """Variables assigned from the environment in from_env (var_dir = ... MLBUS_VAR ...)."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = [c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)
                                         and isinstance(c.value, str) and c.value.startswith("MLBUS_")]
    return found


def shown_default(value) -> str:
    if value in (None, "", {}) or value == Path():
        return ""
    return "`" + str(value).replace(str(ROOT), "$MLBUS_HOME") + "`"


def settings_page() -> tuple[str, list[str]]:
    from services.bus.settings import Settings
    defaults, comments, env = Settings.from_env({}), field_comments(), environment_names()
    rows, names = [], []
    for spec in fields(Settings):
        names.append(spec.name)
        variables = env.get(spec.name, [])[:1] or [DERIVED.get(spec.name, "")]    # the first sets it; the others
                                                                                    # only move its default
        meaning = comments.get(spec.name) or MEANINGS.get(spec.name)
        if not meaning:
            raise RuntimeError(f"docs: Settings.{spec.name} has no comment in settings.py and no meaning in "
                               f"docs/_ext/reference_operations.py")
        for variable in variables:      # a comment often starts with its variable's name: say it once
            meaning = meaning.removeprefix(f"{variable}: ")
        rows.append([", ".join(f"`{v}`" if v.startswith("MLBUS_") else v for v in variables),
                     f"{meaning} (`{spec.name}`)", shown_default(getattr(defaults, spec.name))])
    return table(["environment", "meaning (the field of Settings)", "default"], rows) + "\n", names


# ---- metrics ---------------------------------------------------------------------------------------------------

KINDS = ("Counter", "Gauge", "Histogram", "Summary")
FAMILIES = tuple(f"{kind}MetricFamily" for kind in KINDS)       # custom collectors (prometheus_client.core)


def metrics_page() -> tuple[str, list[str]]:
    """Every `Counter("mlbus_…", doc, labels)` (or Gauge, Histogram, or a collector's `GaugeMetricFamily`) under
    services/, with where it is made; a name may be a string constant of the module or one it imports."""
    rows = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        tree = ast.parse(path.read_text())
        constants = {**imported_strings(path, tree), **module_strings(tree)}
        for scope in scopes(tree):
            rows += [[*metric, f"`{path.relative_to(ROOT)}`"] for metric in metrics_in(scope, constants)]
    rows.sort()
    header = ["metric", "type", "labels (besides service)", "meaning", "made in"]
    return table(header, rows) + "\n", [row[0].strip("`") for row in rows]


def scopes(tree: ast.Module):
    """Each function, and the module's own statements: a label list assigned in one is read only there."""
    yield from (node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))
    yield ast.Module(body=[s for s in tree.body if not isinstance(s, (ast.FunctionDef, ast.ClassDef))],
                     type_ignores=[])


def module_strings(tree: ast.Module) -> dict[str, str]:
    return {n.targets[0].id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)}


def imported_strings(path: Path, tree: ast.Module) -> dict[str, str]:
    """String constants this module imports from a module of this repository (`from .positions import POSITION`)."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            base = path.parents[node.level - 1] if node.level else ROOT
            source = base.joinpath(*node.module.split(".")).with_suffix(".py")
            if source.is_file():
                strings = module_strings(ast.parse(source.read_text()))
                found.update({alias.asname or alias.name: strings[alias.name] for alias in node.names
                              if alias.name in strings})
    return found


def metrics_in(scope: ast.AST, constants: dict[str, str]):
    """(name, type, labels, help) of each metric constructed directly in this function or module body."""
    lists = {n.targets[0].id: n.value for n in ast.walk(scope) if isinstance(n, ast.Assign)
             and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name) and isinstance(n.value, ast.List)}
    for node in ast.walk(scope):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in KINDS + FAMILIES
                and len(node.args) >= 2):
            continue
        name = text(node.args[0], constants)
        if name.startswith("mlbus_"):
            given = node.args[2] if len(node.args) > 2 else next(
                (k.value for k in node.keywords if k.arg in ("labels", "labelnames")), None)
            labels = [label for label in names_of(given, lists) if label != "service"] if given else []
            kind = node.func.id.removesuffix("MetricFamily").lower()
            yield [f"`{name}`", kind, ", ".join(labels), text(node.args[1], constants)]


def names_of(node: ast.AST, lists: dict[str, ast.List]) -> list[str]:
    if isinstance(node, ast.Name) and node.id in lists:
        return names_of(lists[node.id], lists)
    if isinstance(node, ast.Starred):
        return names_of(node.value, lists)
    if isinstance(node, ast.List):
        return [name for element in node.elts for name in names_of(element, lists)]
    if isinstance(node, ast.Constant):
        return [str(node.value)]
    raise RuntimeError(f"docs: cannot read the labels {ast.unparse(node)}")


def text(node: ast.AST, constants: dict[str, str]) -> str:
    """A string, implicit concatenation, an f-string of module constants, or a constant's name."""
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(text(v, constants) for v in node.values)
    if isinstance(node, (ast.FormattedValue,)) and isinstance(node.value, ast.Name):
        return constants.get(node.value.id, node.value.id)
    if isinstance(node, ast.Name):
        return constants.get(node.id, node.id)
    return ast.unparse(node)
