"""Services meet only on topics: none imports another. They share the bus (transport: what every service needs to
talk), the domain package (code several services use, pure: no Kafka client, no clock, no files) and the adapters
package (the domain read from and written to the bus and to files); the bus imports neither the domain nor a
service, the domain imports no adapter and touches no file but the auditor's key."""
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


SHARED = {"bus", "domain", "adapters"}       # the packages every service may import; each other is a service


def test_no_service_imports_another():
    packages = service_packages()
    assert SHARED | {"cli", "console", "auditor", "registry"} <= set(packages)
    for package in packages:
        assert imported_services(package) <= SHARED | {package}, package


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
    assert imported_services("console") <= SHARED | {"console"}
    assert "console" not in imported_services("cli")          # `mlbus console` runs it as a process
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert '"services.console" = ["templates/*.html", "static/*", "assets/package*.json"]' in pyproject
    assert list((console / "templates").glob("*.html")) and list((console / "static").glob("*.js"))


def test_the_bus_library_imports_no_service_and_no_domain_code():
    assert imported_services("bus") <= {"bus"}
    assert imported_services("domain") <= {"bus", "domain"}
    assert imported_services("adapters") <= {"bus", "domain", "adapters"}


# What of the bus the domain may use: the pure modules, none of which reads or writes the bus.
PURE_BUS = {
    "codec": "Avro encoding and the schema catalogue (schemas/ files, no topic)",
    "errors": "exception types",
    "native": "the compiled hot paths, and its plans of Avro types",
    "envelope": "Event and derived ids",
    "edge": "record content checked within its bounds",
    "jsonio": "JSON of records' values",
    "signing": "canonical bytes of signed acts",
    "projections.deployments": "a pure fold", "projections.inventory": "a pure fold",
    "projections.identities": "a pure fold, and signatures checked against it",
}
KAFKA_CLIENTS = ("confluent_kafka", "kafka", "aiokafka", "faust")
# Calls that read the clock: a pure decision takes `now` (STYLE rule 3).
CLOCKS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "utc_now"}


def bus_modules_used(path) -> set[str]:
    """The services.bus modules a file imports (a name imported from one counts as the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("services.bus"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("services.bus")}
    return {m.removeprefix("services.bus").removeprefix(".") for m in found}


def test_the_domain_imports_no_kafka_client_and_only_the_pure_bus():
    for path in (SERVICES / "domain").rglob("*.py"):
        imported = imported_modules(path)
        kafka = {m for m in imported if m.split(".")[0] in KAFKA_CLIENTS}
        assert not kafka, f"{path}: a Kafka client ({sorted(kafka)}); its reader belongs in services/adapters"
        impure = {m for m in bus_modules_used(path) if m not in PURE_BUS}
        assert not impure, f"{path}: services.bus {sorted(impure)} reads or writes the bus: use services/adapters"


def clock_reads(path) -> list[int]:
    """Lines of `path` that call the clock (datetime.now(), time.time(), utc_now() ...)."""
    tree = ast.parse(path.read_text())
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and (
        isinstance(node.func, ast.Attribute) and node.func.attr in CLOCKS and node.func.attr != "time"
        or isinstance(node.func, ast.Attribute) and node.func.attr == "time" and
        isinstance(node.func.value, ast.Name) and node.func.value.id == "time"
        or isinstance(node.func, ast.Name) and node.func.id in CLOCKS - {"time"})]


# Where the domain may touch files: nowhere but the auditor's key, a key object made from its file (its readers and
# writers of stores, anchor and data are services/adapters).
FILE_USERS = {"domain/tree_head.py": "LogKey.load / LogKey.create: the auditor's signing key file"}
FILE_MODULES = ("fsspec", "shutil", "tempfile", "pyarrow", "skops")
FILE_METHODS = {"read_text", "read_bytes", "write_text", "write_bytes", "mkdir", "unlink", "rmdir", "iterdir", "rglob",
                "read_csv", "read_parquet", "to_csv", "to_parquet"}
# Names that touch files only as these modules' functions (str.replace, skops.loads are not files).
FILE_FUNCTIONS = {"open", "fdopen", "fsync", "makedirs", "remove", "replace", "rename", "load", "dump"}


def touches_a_file(called: ast.expr) -> bool:
    if isinstance(called, ast.Name):
        return called.id == "open"
    if not isinstance(called, ast.Attribute):
        return False
    owner = called.value.id if isinstance(called.value, ast.Name) else None
    return called.attr in FILE_METHODS or called.attr in FILE_FUNCTIONS and owner in ("os", "json", "pickle")


def file_uses(path) -> list[int]:
    """Lines of `path` that touch files: open(), os.open(), Path.read_text() ..., or import a file library."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            lines += [node.lineno for m in modules if m.split(".")[0] in FILE_MODULES]
        elif isinstance(node, ast.Call) and touches_a_file(node.func):
            lines.append(node.lineno)
    return lines


def test_the_domain_touches_no_file_but_the_auditors_key():
    touching = {str(p.relative_to(SERVICES)): file_uses(p) for p in (SERVICES / "domain").rglob("*.py")}
    outside = {path: lines for path, lines in touching.items() if lines and path not in FILE_USERS}
    assert not outside, f"the domain touches files (stores and files are services/adapters'): {outside}"
    assert touching["domain/tree_head.py"], "the scan sees LogKey's file"


def test_the_file_scan_finds_a_file_however_it_is_touched(tmp_path):
    for text in ("open(p)\n", "p.read_text()\n", "os.open(p, 0)\n", "import fsspec\n", "pd.read_csv(p)\n",
                 "frame.to_parquet(p)\n", "os.replace(a, b)\n", "json.load(f)\n", "from shutil import copy\n"):
        (tmp_path / "m.py").write_text(text)
        assert file_uses(tmp_path / "m.py") == [1], text
    (tmp_path / "m.py").write_text("text.replace('a', 'b')\nskops_like.loads(b)\nmodel.load\n")
    assert file_uses(tmp_path / "m.py") == []


def test_the_domain_reads_no_clock():
    reading = {str(p.relative_to(SERVICES)): clock_reads(p) for p in (SERVICES / "domain").rglob("*.py")}
    assert not {path: lines for path, lines in reading.items() if lines}, "the domain reads the clock: take `now`"


def test_the_purity_scans_see_a_kafka_client_the_bus_and_the_clock(tmp_path):
    for text in ("from confluent_kafka import Consumer\n", "import confluent_kafka.admin\n"):
        (tmp_path / "m.py").write_text(text)
        assert {m for m in imported_modules(tmp_path / "m.py", tmp_path) if m.startswith("confluent_kafka")}, text
    for text, used in (("from services.bus.replay import read_topics\n", {"replay"}),
                       ("import services.bus.kafka\n", {"kafka"}), ("from services.bus import Bus\n", {""}),
                       ("from services.bus.settings import ConfigError\n", {"settings"}),
                       ("from services.bus.projections.inventory import Inventory\n", {"projections.inventory"})):
        (tmp_path / "m.py").write_text(text)
        assert bus_modules_used(tmp_path / "m.py") == used, text
    for text in ("datetime.now(timezone.utc)\n", "time.time()\n", "time.monotonic()\n", "utc_now()\n",
                 "datetime.now()\n", "date.today()\n"):
        (tmp_path / "m.py").write_text(text)
        assert clock_reads(tmp_path / "m.py") == [1], text
    (tmp_path / "m.py").write_text("value.time()\nt.time\nx.timestamp()\n")
    assert clock_reads(tmp_path / "m.py") == []


def test_services_import_the_shared_packages_not_their_files():
    for path in SERVICES.rglob("*.py"):
        inside = path.relative_to(SERVICES).parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                for package in ("domain", "adapters"):
                    assert inside == package or not node.module.startswith(f"services.{package}."), \
                        f"{path}: import from services.{package}"


# Where JSON may be parsed: the edge (record content, once) and readers of files and settings, never of records.
JSON_READERS = {
    "bus/edge.py": "the edge: every record's *_json fields, within its bounds",
    "bus/codec.py": "Avro schema files, and announced schemas the codec checks against their fingerprints",
    "bus/records_gen.py": "Avro schema files (code generation)",
    "bus/schema_registry.py": "a schema registry's answers (ids, schemas), never a record",
    "adapters/schema_registry.py": "a schema registry's answers (ids, schemas, compatibility verdicts)",
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
    "domain/tree_head.py": "a line of the anchor (parse_line: a head as JSON)",
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
