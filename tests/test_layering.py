"""The house's layering, read from the source with `ast` (every import, those inside functions included).

- Stages never import each other, the CLI, the api or the composers above them (``build``, ``demo``, ``predict``):
  ``fusekit.api`` and the commands compose them.
- The ground floor (``workspace``, ``records``, ``taxonomy``, ``errors``, ``text``, ...) imports no stage.
- ``train`` reads shards only: no table schema of the workspace, no ``Workspace.read``.
- ``dedupe`` reads only ``faces`` (and writes ``decisions``).

A new stage package is one more name in ``STAGES`` (the other branches add audit, review, report, explain).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fusekit"
# Every stage of DESIGN.md's table that is built: a package or module fusekit/<name>.
STAGES = ["ingest", "crawl", "faces", "dedupe", "balance", "train", "audit", "review", "report", "explain"]
# What composes stages: no stage may import these.
ABOVE = ["cli", "api", "commands", "build", "demo", "predict"]
# Imports no stage (nor anything above the stages).
GROUND = ["workspace", "records", "taxonomy", "errors", "text", "render", "locks", "lazy", "progress", "processes",
          "runner", "distribute_ray", "reviews",
          "imageio", "manifests", "config", "archives", "sources"]
TABLE_SCHEMAS = {"IMAGES_SCHEMA", "REJECTS_SCHEMA", "FACES_SCHEMA", "DECISIONS_SCHEMA"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """Every fusekit module ``name`` imports (``from fusekit import x`` counts as ``fusekit.x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("fusekit"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "fusekit" or node.module is None:  # `from fusekit import api`, `from . import records`
                out.update(f"{target}.{a.name}" for a in node.names)
            elif target.startswith("fusekit."):
                out.add(target)
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (names for type hints only, never imported at run time)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


MODULES = _modules()
IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


@pytest.mark.parametrize("stage", [s for s in STAGES if any(_top(m) == s for m in MODULES)])
def test_a_stage_imports_no_other_stage_and_nothing_above_it(stage):
    wrong = sorted(f"{m} imports {i}" for m, imported in IMPORTS.items() if _top(m) == stage
                   for i in imported if _top(i) != stage and _top(i) in {*STAGES, *ABOVE})
    assert wrong == []


def test_the_ground_floor_imports_no_stage():
    wrong = sorted(f"{m} imports {i}" for m, imported in IMPORTS.items() if _top(m) in GROUND
                   for i in imported if _top(i) in {*STAGES, *ABOVE})
    assert wrong == []


def _table_uses(stage: str, schemas: set[str], readable: tuple[str, ...]) -> list[str]:
    """Where a ``stage`` module names one of ``schemas`` or reads (``.read("name", ...)``) a table not in
    ``readable``."""
    wrong = []
    for name, path in MODULES.items():
        if _top(name) != stage:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Name, ast.alias)) and (getattr(node, "id", None) or node.name) in schemas:
                wrong.append(f"{name} uses a table schema")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "read" \
                    and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value not in readable:
                wrong.append(f"{name} reads the table {node.args[0].value!r}")
    return wrong


def test_train_reads_shards_only():
    assert _table_uses("train", TABLE_SCHEMAS, ()) == []


def test_dedupe_reads_only_faces():
    """What dedupe needs of a picture (its labels, a label conflict) the faces stage copies into the faces rows."""
    # faces; its own decisions and hash cache
    assert _table_uses("dedupe", TABLE_SCHEMAS - {"FACES_SCHEMA", "DECISIONS_SCHEMA"},
                       ("faces", "decisions", "dedupe_hashes")) == []


def test_every_module_is_on_a_known_floor():
    """A new top-level module must be placed (a stage, the ground floor or above), so the rules above cover it."""
    known = {*STAGES, *ABOVE, *GROUND, "", "__main__"}
    assert sorted({_top(m) for m in MODULES} - known) == []


def test_the_checker_sees_imports_inside_functions(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from fusekit.faces import run_faces\n    from . import records\n"
                    "if TYPE_CHECKING:\n    from fusekit.api import IngestRun\n")
    assert _imports("fusekit.crawl.mod", path) == {"fusekit.faces", "fusekit.crawl.records"}
