"""Services meet only on topics: none imports another (services/bus and the CLI front end excepted)."""
import ast

from services.bus.settings import PROJECT_ROOT

SERVICES = PROJECT_ROOT / "services"


def imported_services(package: str) -> set[str]:
    found = set()
    for path in (SERVICES / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found |= {n.split(".")[1] for n in names if n.startswith("services.") and n.count(".") >= 1}
    return found


def test_no_service_imports_another():
    packages = [p.name for p in SERVICES.iterdir() if (p / "__init__.py").exists()]
    assert "bus" in packages
    for package in packages:
        assert imported_services(package) <= {"bus", package}, package


def test_the_bus_library_imports_no_service():
    assert imported_services("bus") <= {"bus"}
