"""The code's layout rules: module boundaries a refactor must not erode."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tagger", "model_zoo", "beetsplug", "training", "benchmarks")


def _modules() -> dict[str, ast.Module]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = ast.parse(path.read_text(), str(path))
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines at module level or in its classes."""
    names = set()
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {n for n in names if _private(n)}


def _resolve(module: str, level: int, name: str | None) -> str:
    if not level:
        return name or ""
    base = module.split(".")[: -level] if level else []
    return ".".join(base + ([name] if name else []))


def _reach_ins(modules: dict[str, ast.Module]) -> list[str]:
    owners: dict[str, set[str]] = {}
    for mod, tree in modules.items():
        for n in _defined_private_names(tree):
            owners.setdefault(n, set()).add(mod)
    found = []
    for mod, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                src = _resolve(mod, node.level, node.module)
                for alias in node.names:
                    if _private(alias.name) and src != mod:
                        found.append(f"{mod}: from {src} import {alias.name}")
            elif (isinstance(node, ast.Attribute) and _private(node.attr)
                  and node.attr in owners and mod not in owners[node.attr]
                  and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                found.append(f"{mod}:{node.lineno}: .{node.attr} (private to "
                             f"{', '.join(sorted(owners[node.attr]))})")
    return found


def test_no_module_uses_another_modules_private_names():
    """Modules talk through public names: no ``from X import _y`` and no
    ``obj._y`` where ``_y`` is private to another module (tests are exempt)."""
    assert _reach_ins(_modules()) == []


def test_the_check_finds_a_reach_in():
    mods = {"a": ast.parse("def _helper():\n    pass\nclass C:\n    def _m(self):\n        pass\n"),
            "b": ast.parse("from a import _helper\nimport a\na.C()._m()\n")}
    assert len(_reach_ins(mods)) == 2


@pytest.mark.parametrize("module", ["model_zoo.registry", "model_zoo", "model_zoo.vocab",
                                    "model_zoo.keys", "tagger.notation"])
def test_light_modules_do_not_import_torch(module):
    """The registry and the key/vocabulary helpers stay usable without loading torch."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"
