"""services/domain hands its names out lazily (each module loads on first use), and spells each one out again for
type checkers and editors in an `if TYPE_CHECKING:` block. The two lists must agree: a name added to one only
would be Any to mypy, or would fail at run time."""
from __future__ import annotations

import ast
import importlib
import textwrap

import services.domain as domain
from services.bus.settings import PROJECT_ROOT

INIT = PROJECT_ROOT / "services" / "domain" / "__init__.py"


def type_checking_imports(source: str) -> set[tuple[str, str, str]]:
    """(module, name in it, name exported) for each import under `if TYPE_CHECKING:` in a module's source."""
    found = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for line in node.body:
                assert isinstance(line, ast.ImportFrom) and line.level == 1, ast.unparse(line)
                found |= {(line.module or "", a.name, a.asname or a.name) for a in line.names}
    return found


def lazy_exports() -> set[tuple[str, str, str]]:
    return {(module, domain._RENAMED.get(name, name), name) for name, module in domain._EXPORTS.items()}


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


def test_the_type_checking_block_names_every_lazy_export_as_it_is_handed_out():
    written, lazy = type_checking_imports(INIT.read_text()), lazy_exports()
    assert written == lazy, (f"only in _EXPORTS: {sorted(lazy - written)}; only under TYPE_CHECKING: "
                             f"{sorted(written - lazy)}. The block, from _EXPORTS (ruff format wraps it):\n"
                             + rendered(lazy))


def test_every_lazy_export_loads_as_the_object_its_module_holds():
    for module, name, alias in sorted(lazy_exports()):
        assert getattr(domain, alias) is getattr(importlib.import_module(f"services.domain.{module}"), name), alias


def test_the_comparison_sees_a_name_missing_from_the_block():
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .alerts import alert as alert\n"
    assert type_checking_imports(source) == {("alerts", "alert", "alert")}
    assert ("alerts", "training_request", "training_request") in lazy_exports() - type_checking_imports(source)
