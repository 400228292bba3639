"""The layers import one way: recipes → adapters → core. Checked over the source's AST (every import, lazy ones
inside functions included), so a violation fails here rather than in a reviewer's head.

- the core (``sdk/`` → ``ragloom``) never imports ``ragloom.adapters`` or ``ragloom.recipes``;
- an adapter never imports ``ragloom.recipes``, nor another adapter family except through the core (the
  integrations package may use the families it bridges, and a family's own subpackage is itself).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAMILIES_OPEN_TO = {"integrations"}  # bridges: wrap any family for a framework
ALLOWED_ACROSS = {("late_chunking", "dense"), ("dense", "dense_onnx")}
"""Known family-to-family edges, each a deliberate design: late chunking *is* the dense encoder's token states
pooled per chunk, so it reuses that encoder rather than a copy (moving it into the core would put a transformers
model class there); ``dense_onnx`` is the dense encoder's optional ONNX Runtime backend, imported lazily by it
when ``backend="onnx"`` (a module of its own so ``dense.py`` stays one responsibility)."""


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    tables = {  # module-level name -> dict literal, for the lazy-export tables handed to lazy_exports
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "lazy_exports":
            for arg in node.args:  # name -> module tables: each module is imported on first use of the name
                table = tables.get(arg.id) if isinstance(arg, ast.Name) else arg
                if isinstance(table, ast.Dict):
                    found.extend(
                        (node.lineno, value.value)
                        for value in table.values
                        if isinstance(value, ast.Constant) and isinstance(value.value, str)
                    )
    return found


def _family(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 3 and parts[:2] == ["ragloom", "adapters"]:
        return parts[2]
    return None


def _own_family(path: Path) -> str:
    relative = path.relative_to(ROOT / "adapters")
    return relative.parts[0].removesuffix(".py")


@pytest.mark.parametrize("layer", ["sdk", "adapters"])
def test_dependencies_point_one_way(layer: str) -> None:
    violations = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for line, module in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if layer == "sdk" and module.startswith(("ragloom.adapters", "ragloom.recipes")):
                violations.append(where)
            if layer == "adapters":
                if module.startswith("ragloom.recipes"):
                    violations.append(where)
                family, own = _family(module), _own_family(path)
                crossing = family and family not in (own, "__init__") and own not in (*FAMILIES_OPEN_TO, "__init__")
                if crossing and (own, family) not in ALLOWED_ACROSS:
                    violations.append(where)
    assert not violations, "layering violations:\n" + "\n".join(violations)


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "def f():\n    from ragloom.recipes.cli import app\n    import importlib\n"
        "    importlib.import_module('ragloom.adapters.dense')\n"
        "_LAZY = {'Thing': 'ragloom.recipes.config'}\n"
        "__getattr__, __dir__ = lazy_exports(__name__, _LAZY, [])\n"
        "x = lazy_exports(__name__, {'Other': 'ragloom.adapters.sparse'}, [])\n"
    )
    modules = [m for _, m in _imports(sample)]
    assert "ragloom.recipes.cli" in modules and "ragloom.adapters.dense" in modules
    assert "ragloom.recipes.config" in modules and "ragloom.adapters.sparse" in modules
