"""Reference pages for operators, generated from the code: every field of every section of `Settings` with the
environment variable that sets it (read from its section's `from_env`), and every Prometheus metric a service
constructs."""
from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

from reference_pages import ROOT, table

SETTINGS_SOURCE = ROOT / "services" / "bus" / "settings.py"
# Fields no MLBUS_* variable sets: what sets them instead.
DERIVED = {"kafka_overrides": "MLBUS_KAFKA_*", "identity_principal": "(your identity file: MLBUS_IDENTITY)",
           "identity_kafka": "(your identity file: MLBUS_IDENTITY)"}


def section_classes() -> dict[str, ast.ClassDef]:
    """The classes of settings.py by name."""
    tree = ast.parse(SETTINGS_SOURCE.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def field_comments(section: ast.ClassDef) -> dict[str, str]:
    """The comment on each field's line in settings.py, with the comment-only lines that continue it."""
    lines = SETTINGS_SOURCE.read_text().splitlines()
    found = {}
    for node in section.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and "#" in lines[node.lineno - 1]:
            parts = [lines[node.lineno - 1].split("#", 1)[1].strip()]
            for line in lines[node.lineno:]:
                if not line.strip().startswith("#"):
                    break
                parts.append(line.strip().removeprefix("#").strip())
            found[node.target.id] = " ".join(parts)
    return found


def environment_names(section: ast.ClassDef) -> dict[str, list[str]]:
    """Field → the MLBUS_* variables its expression in the section's from_env reads."""
    calls = [n for n in ast.walk(section) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id == "cls"]
    if len(calls) != 1:
        raise RuntimeError(f"docs: {section.name}.from_env no longer builds one cls(...): teach docs/_ext/"
                           "reference_operations.py the new shape")
    names, lets = {}, local_names(section)
    for keyword in calls[0].keywords:
        found = [c.value for c in ast.walk(keyword.value) if isinstance(c, ast.Constant)
                 and isinstance(c.value, str) and c.value.startswith("MLBUS_")]
        for name in (n.id for n in ast.walk(keyword.value) if isinstance(n, ast.Name)):
            found += lets.get(name, [])
        names[keyword.arg] = list(dict.fromkeys(found))
    return names


def local_names(tree: ast.AST) -> dict[str, list[str]]:
    """Variables assigned from the environment in a from_env (var_dir = ... MLBUS_VAR ...)."""
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


def settings_rows(section_name: str, section) -> list[list[str]]:
    """One row per field of a section: its variable, its meaning and the default from_env({}) gives it."""
    source = section_classes()[type(section).__name__]
    comments, env = field_comments(source), environment_names(source)
    rows = []
    for spec in fields(section):
        variables = env.get(spec.name, [])[:1] or [DERIVED.get(spec.name, "")]    # the first sets it; the others
                                                                                    # only move its default
        meaning = comments.get(spec.name)
        if not meaning or variables == [""]:
            raise RuntimeError(f"docs: {type(section).__name__}.{spec.name} needs a comment in settings.py and an "
                               "MLBUS_* variable in its from_env (or a DERIVED entry in docs/_ext)")
        for variable in variables:      # a comment often starts with its variable's name: say it once
            meaning = meaning.removeprefix(f"{variable}: ")
        rows.append([", ".join(f"`{v}`" if v.startswith("MLBUS_") else v for v in variables),
                     f"{meaning} (`{section_name}.{spec.name}`)", shown_default(getattr(section, spec.name))])
    return rows


def settings_page() -> tuple[str, list[str]]:
    """A heading and a table per section of Settings; covers `section.field` of every field."""
    from services.bus.settings import Settings
    defaults = Settings.from_env({})
    out, names = [], []
    for spec in fields(Settings):
        section = getattr(defaults, spec.name)
        rows = settings_rows(spec.name, section)
        names += [f"{spec.name}.{field.name}" for field in fields(section)]
        out += [f"## `settings.{spec.name}`", "", " ".join((type(section).__doc__ or "").split()), "",
                table(["environment", "meaning (the field of the section)", "default"], rows), ""]
    return "\n".join(out), names


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
