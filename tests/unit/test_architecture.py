"""Services meet only on topics: none imports another. They share the bus (transport: what every service needs to
talk) and the domain package (code several services use); the bus imports neither the domain nor a service."""
import ast

from services.bus.settings import PROJECT_ROOT

SERVICES = PROJECT_ROOT / "services"


def imported_modules(path, root=PROJECT_ROOT) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions too); relative imports resolved
    against the file's package, so `from .. import x` counts as what it reaches."""
    package = list(path.relative_to(root).parent.parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found |= {module, *(f"{module}.{a.name}" for a in node.names)}     # a name may be a module
    return found


def imported_services(package: str, root=PROJECT_ROOT) -> set[str]:
    """The packages under services/ that services/<package> imports (itself included)."""
    names = set().union(*[imported_modules(p, root) for p in (root / "services" / package).rglob("*.py")])
    return {n.split(".")[1] for n in names if n.startswith("services.")}


def service_packages() -> list[str]:
    return sorted(p.name for p in SERVICES.iterdir() if (p / "__init__.py").exists())


def test_no_service_imports_another():
    packages = service_packages()
    assert {"bus", "domain", "cli", "console", "auditor", "registry"} <= set(packages)
    for package in packages:
        assert imported_services(package) <= {"bus", "domain", package}, package


def test_a_relative_import_counts_as_the_package_it_reaches(tmp_path):
    (tmp_path / "services" / "one" / "inner").mkdir(parents=True)
    for text, reached in (("from .. import other\n", {"one"}), ("from ...two import x\n", {"two"}),
                          ("from . import y\n", {"one"}), ("def f():\n    import services.three\n", {"three"}),
                          ("from services import four\n", {"four"})):
        (tmp_path / "services" / "one" / "inner" / "m.py").write_text(text)
        assert imported_services("one", tmp_path) == reached, text


def test_the_console_is_a_service_of_its_own():
    console = SERVICES / "console"
    assert (console / "__init__.py").exists() and (console / "__main__.py").exists()
    assert not (SERVICES / "cli" / "console").exists()
    assert imported_services("console") == {"bus", "domain", "console"}
    assert "console" not in imported_services("cli")          # `mlbus console` runs it as a process
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert '"services.console" = ["templates/*.html", "static/*", "assets/package*.json"]' in pyproject
    assert list((console / "templates").glob("*.html")) and list((console / "static").glob("*.js"))


def test_the_bus_library_imports_no_service_and_no_domain_code():
    assert imported_services("bus") <= {"bus"}
    assert imported_services("domain") <= {"bus", "domain"}


def test_services_import_the_domain_package_not_its_files():
    for path in SERVICES.rglob("*.py"):
        if "domain" in path.relative_to(SERVICES).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("services.domain."), f"{path}: import from services.domain"


# Where JSON may be parsed: the edge (record content, once) and readers of files and settings, never of records.
JSON_READERS = {
    "bus/edge.py": "the edge: every record's *_json fields, within its bounds",
    "bus/codec.py": "Avro schema files, and announced schemas the codec checks against their fingerprints",
    "bus/records_gen.py": "Avro schema files (code generation)",
    "bus/poison.py": "the runtime's own state file",
    "bus/positions.py": "librdkafka's statistics, from the runtime's own consumer",
    "bus/identity.py": "a person's identity file",
    "cli/people_cmd.py": "enrolment requests and credentials files handed between a person and the admin",
    "validator/adapters.py": "data contract files",
    "cli/models_cmd.py": "data contract files",
    "cli/score_cmd.py": "a data contract file",
    "cli/backup_cmd.py": "a backup's manifest",
    "cli/audit_cmd.py": "checkpoint and proof files a person passes",
    "cli/io_cmd.py": "JSON lines a person sends (then encoded and checked like any record)",
    "domain/proofs.py": "proof documents (files)",
    "domain/anchor.py": "the anchor file",
}


def json_parses(path) -> list[int]:
    """Lines of `path` that call json.loads / json.load (or a loads / load imported from json)."""
    tree = ast.parse(path.read_text())
    imported = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module in ("json", "orjson", "simplejson", "ujson") for a in node.names
                if a.name in ("loads", "load")}
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = node.func
        if isinstance(called, ast.Attribute) and called.attr in ("loads", "load") and \
                isinstance(called.value, ast.Name) and called.value.id in ("json", "orjson", "simplejson", "ujson"):
            lines.append(node.lineno)
        elif isinstance(called, ast.Name) and called.id in imported:
            lines.append(node.lineno)
    return lines


def test_record_content_is_parsed_at_the_edge_only():
    parsing = {str(p.relative_to(SERVICES)): json_parses(p) for p in SERVICES.rglob("*.py")}
    outside = {path: lines for path, lines in parsing.items() if lines and path not in JSON_READERS}
    assert not outside, f"JSON parsed outside the edge (use services.bus.edge.content): {outside}"
    assert parsing["bus/edge.py"], "the edge parses JSON"


def test_the_json_scan_finds_a_parse_however_it_is_imported(tmp_path):
    for text in ("import json\njson.loads(x)\n", "from json import loads\nloads(x)\n",
                 "from json import loads as l\nl(x)\n", "import json\njson.load(f)\n"):
        (tmp_path / "m.py").write_text(text)
        assert json_parses(tmp_path / "m.py") == [2], text


def handler_parameters() -> dict[str, str]:
    """Each service handler's `__call__` (what the runtime hands a message to) → its first parameter's type."""
    found = {}
    for path in [*SERVICES.glob("*/handlers.py"), SERVICES / "scorer" / "scorer.py", SERVICES / "drift_watcher" /
                 "router.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "__call__":
                parameter = node.args.args[1]
                found[str(path.relative_to(SERVICES))] = ast.unparse(parameter.annotation) \
                    if parameter.annotation else "(none)"
    return found


def test_a_handler_takes_decoded_records_never_a_dict():
    taken = handler_parameters()
    assert len(taken) >= 7, taken
    for path, annotation in taken.items():
        assert annotation in ("Received", "list[Received]", "list[Message]"), f"{path}: __call__ takes {annotation}"
