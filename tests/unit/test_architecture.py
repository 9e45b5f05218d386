"""Services meet only on topics: none imports another. They share the bus (transport: what every service needs to
talk) and the domain package (code several services use); the bus imports neither the domain nor a service."""
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
        assert imported_services(package) <= {"bus", "domain", package}, package


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
