"""services/domain and services/adapters hand their names out lazily (each module loads on first use), and spell each
one out again for type checkers and editors in an `if TYPE_CHECKING:` block. The two lists must agree: a name added
to one only would be Any to mypy, or would fail at run time."""
from __future__ import annotations

import ast
import importlib
import textwrap

import pytest

import services.adapters as adapters
import services.domain as domain
from services.bus.settings import PROJECT_ROOT

PACKAGES = [domain, adapters]


def type_checking_imports(source: str) -> set[tuple[str, str, str]]:
    """(module, name in it, name exported) for each import under `if TYPE_CHECKING:` in a module's source."""
    found = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for line in node.body:
                assert isinstance(line, ast.ImportFrom) and line.level == 1, ast.unparse(line)
                found |= {(line.module or "", a.name, a.asname or a.name) for a in line.names}
    return found


def lazy_exports(package=domain) -> set[tuple[str, str, str]]:
    return {(module, package._RENAMED.get(name, name), name) for name, module in package._EXPORTS.items()}


def init_of(package) -> str:
    return (PROJECT_ROOT / package.__name__.replace(".", "/") / "__init__.py").read_text()


def rendered(exports: set[tuple[str, str, str]]) -> str:
    """The TYPE_CHECKING block for these exports (module, name, as): what to paste when the test says it differs."""
    lines = []
    for module in sorted({m for m, _, _ in exports}):
        names = [name if name == alias else f"{name}\xa0as\xa0{alias}"          # no line break inside "x as y"
                 for m, name, alias in sorted(exports, key=lambda e: (e[1].lower(), e[1])) if m == module]
        start = f"    from .{module} import "
        text = start + ", ".join(names) if len(start + ", ".join(names)) <= 120 else textwrap.fill(
            ", ".join(names), 120, initial_indent=start + "(", subsequent_indent=" " * len(start + "("),
            break_on_hyphens=False) + ")"
        lines.append(text.replace("\xa0", " "))
    return "if TYPE_CHECKING:\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_the_type_checking_block_names_every_lazy_export_as_it_is_handed_out(package):
    written, lazy = type_checking_imports(init_of(package)), lazy_exports(package)
    assert written == lazy, (f"only in _EXPORTS: {sorted(lazy - written)}; only under TYPE_CHECKING: "
                             f"{sorted(written - lazy)}. The block, from _EXPORTS (ruff format wraps it):\n"
                             + rendered(lazy))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.__name__)
def test_every_lazy_export_loads_as_the_object_its_module_holds(package):
    for module, name, alias in sorted(lazy_exports(package)):
        assert getattr(package, alias) is getattr(importlib.import_module(f"{package.__name__}.{module}"), name), alias


def test_the_adapters_export_no_domain_name():
    assert not set(adapters._EXPORTS) & set(domain._EXPORTS)


def test_the_comparison_sees_a_name_missing_from_the_block():
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .alerts import alert as alert\n"
    assert type_checking_imports(source) == {("alerts", "alert", "alert")}
    assert ("alerts", "training_request", "training_request") in lazy_exports() - type_checking_imports(source)
