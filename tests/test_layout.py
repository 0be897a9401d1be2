"""The README's layout section matches the tree: every command and package of `src/` is named
there, and every module says its one job in the first line of its docstring."""

from __future__ import annotations

import ast

import pytest

from .helpers import REPO

LAYOUT = (REPO / "README.md").read_text().split("## Layout", 1)[1].split("```")[1]
MODULES = sorted(
    p for p in (REPO / "src").rglob("*.py") if p.name != "__init__.py" or p.parent.name != "src"
)


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(REPO / "src")))
def test_every_module_is_in_the_layout_and_says_its_job(module) -> None:
    relative = module.relative_to(REPO / "src")
    named = relative.name if len(relative.parts) == 1 else f"{relative.parts[0]}/"  # a package
    assert named in LAYOUT, f"README's layout does not name src/{relative}"
    docstring = ast.get_docstring(ast.parse(module.read_text()))
    assert docstring and docstring.splitlines()[0].strip(), f"src/{relative} has no first line"
