"""Architecture rules that keep the Raspberry Pi install small and the layers apart.

The rules are checked on the import graph of EVERY module under engine/ (an AST walk, so a new
module is covered the day it is added), and once more by importing them all in a clean process:

- engine never imports Qt (PySide6, shiboken6, qdarktheme) or app/, at any level;
- torch is imported only by the model definition, export, checkpoint import and training modules
  (TORCH_MODULES); no other module reaches torch through its module-level imports, and only the
  commands that need torch (train, models import) import a torch module lazily;
- progress bars (tqdm) are drawn by the CLI only; the engine reports progress through callbacks;
- evaluation does not import the training package;
- imports between the engine's role groups point one way (GROUP_ORDER): shared ideas at the top
  of engine/ <- models/ <- run/ <- io/ <- jobs/ <- training/ <- cli/, lazy imports included.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENGINE = REPO / "engine"
QT_OR_APP = {"PySide6", "shiboken6", "qdarktheme", "app"}
TORCH_ROOTS = {"torch", "torchvision"}
# modules that may need torch: model definition, export, checkpoint import and the training package
TORCH_MODULES = {"engine.models.topformer", "engine.models.export", "engine.models.checkpoint"}
# commands that may import a torch module inside a function (only when that command runs)
LAZY_TORCH_IMPORTERS = {"engine.cli.train_cmd", "engine.cli.models_cmd",
                        # verifies a finished download (official layout, finite tensors) before
                        # keeping it; installing it needs torch anyway (export to ONNX)
                        "engine.models.download"}
# known offender that another branch of this round fixes (h-stability: download's progress bar);
# the coordinator empties this set after the merge. Allowed, not required.
PENDING_TQDM: set[str] = set()  # engine.models.download: fixed by h-stability (progress callback)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ENGINE.rglob("*.py"))}
TORCH_MODULES |= {m for m in MODULES if m.startswith("engine.training.")}


def _with_parents(name: str) -> list[str]:
    """``import a.b.c`` runs a, a.b and a.b.c."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imports_of(name: str, source: str, is_package: bool, known: set[str]) -> list[tuple[str, bool]]:
    """(imported module, lazy) for every import in ``source``; lazy = inside a function or TYPE_CHECKING."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lazy = True
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lazy = True
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.extend((m, lazy) for m in _with_parents(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            found.extend((m, lazy) for m in _with_parents(base))
            for alias in node.names:
                if f"{base}.{alias.name}" in known:  # ``from . import overlay`` imports a module
                    found.append((f"{base}.{alias.name}", lazy))
        for child in ast.iter_child_nodes(node):
            visit(child, lazy)

    visit(ast.parse(source), False)
    return found


GRAPH = {name: imports_of(name, path.read_text(), path.name == "__init__.py", set(MODULES))
         for name, path in MODULES.items()}


def module_level_closure(name: str) -> set[str]:
    """Everything importing ``name`` loads: engine modules and the roots of external packages."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        if current in GRAPH:
            todo.extend(target for target, lazy in GRAPH[current] if not lazy)
    return {m if m in MODULES else m.split(".")[0] for m in seen}


# engine/<group>/...; a module directly under engine/ (errors, scales, fileio, paths, result) is "shared"
GROUP_ORDER = ["shared", "models", "run", "io", "jobs", "training", "cli"]
# old module paths of the public surface, kept as one-line re-exports for users' scripts
OLD_PATHS = {"engine.segmenter": "engine.run.segmenter", "engine.registry": "engine.models.registry",
             "engine.sources": "engine.io.sources", "engine.overlay": "engine.run.overlay"}


def group_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in GROUP_ORDER else "shared"


def test_the_walk_sees_every_engine_module():
    assert len(MODULES) >= 30
    for expected in ("engine.jobs.annotate", "engine.jobs.annotate.job", "engine.jobs.annotate.sinks", "engine.run.segmenter",
                     "engine.cli.annotate_cmd", "engine.training.data", "engine.fileio"):
        assert expected in MODULES
    # the walker itself: relative, lazy and TYPE_CHECKING imports are told apart
    src = ("from . import b\nfrom ..x import y\nimport torch.nn\n"
           "def f():\n    import PySide6.QtCore\nif TYPE_CHECKING:\n    import app\n")
    got = imports_of("engine.pkg.a", src, False, {"engine.pkg.b"})
    assert ("engine.pkg.b", False) in got and ("engine.x", False) in got and ("torch", False) in got
    assert ("PySide6.QtCore", True) in got and ("app", True) in got


def test_engine_never_imports_qt_or_app():
    offenders = sorted(f"{name} imports {target}" for name, edges in GRAPH.items()
                       for target, _ in edges if target.split(".")[0] in QT_OR_APP)
    assert offenders == []


def test_torch_only_in_model_export_checkpoint_and_training_modules():
    users = {name for name, edges in GRAPH.items() if any(t.split(".")[0] in TORCH_ROOTS for t, _ in edges)}
    assert sorted(users - TORCH_MODULES) == []
    assert {"engine.models.topformer", "engine.models.export", "engine.models.checkpoint"} <= users  # the walk finds real imports
    torchy = TORCH_ROOTS | users
    reached = sorted(f"{name} reaches {sorted(bad)}" for name in MODULES if name not in TORCH_MODULES
                     if (bad := module_level_closure(name) & torchy))
    assert reached == []
    lazy = sorted(f"{name} imports {target} lazily" for name, edges in GRAPH.items()
                  if name not in TORCH_MODULES | LAZY_TORCH_IMPORTERS
                  for target, _ in edges if target in MODULES and module_level_closure(target) & torchy)
    assert lazy == []


def test_progress_bars_only_in_the_cli():
    offenders = sorted(name for name, edges in GRAPH.items() if not name.startswith("engine.cli")
                       and name not in PENDING_TQDM and any(t.split(".")[0] == "tqdm" for t, _ in edges))
    assert offenders == []


def test_imports_between_engine_groups_point_one_way():
    every_group = {group_of(m) for m in MODULES}
    assert every_group == set(GROUP_ORDER)  # a new folder under engine/ must be given a place here
    assert group_of("engine.run.segmenter") == "run" and group_of("engine.errors") == "shared"
    upward = sorted(f"{name} imports {target}" for name, edges in GRAPH.items() if name not in OLD_PATHS
                    for target, _ in edges if target in MODULES
                    if GROUP_ORDER.index(group_of(target)) > GROUP_ORDER.index(group_of(name)))
    assert upward == []


def test_every_engine_import_names_a_real_module():
    """Lazy imports too: a moved module leaves no import that only fails when its command runs."""
    missing = sorted(f"{name} imports {target}" for name, edges in GRAPH.items()
                     for target, _ in edges if target.split(".")[0] == "engine" and target not in MODULES)
    assert missing == []


def test_old_public_paths_only_re_export():
    for old, new in OLD_PATHS.items():
        tree = ast.parse(MODULES[old].read_text())
        statements = [n for n in tree.body if not isinstance(n, ast.Expr)]  # the docstring aside
        assert len(statements) == 1 and isinstance(statements[0], ast.ImportFrom), old
        assert {t for t, _ in GRAPH[old]} == set(_with_parents(new)), old
    code = ("import engine.segmenter, engine.registry, engine.sources, engine.overlay, engine.run.segmenter\n"
            "assert engine.segmenter.Segmenter is engine.run.segmenter.Segmenter\n"
            "assert engine.registry.Registry and engine.sources.open_source and engine.overlay.colorize\n"
            "import engine; assert engine.Segmenter is engine.segmenter.Segmenter\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_evaluation_and_runtime_do_not_import_training():
    offenders = sorted(f"{name} imports {target}" for name, edges in GRAPH.items()
                       if not name.startswith("engine.training") and name not in LAZY_TORCH_IMPORTERS
                       for target, _ in edges
                       if target.startswith("engine.training"))
    assert offenders == []


def test_every_runtime_module_imports_without_torch_or_qt():
    """The same rule, executed: import every module outside TORCH_MODULES in a clean process."""
    runtime = sorted(m for m in MODULES if m not in TORCH_MODULES)
    code = ("import sys, importlib\n"
            f"for m in {runtime!r}: importlib.import_module(m)\n"
            "bad = sorted({m.split('.')[0] for m in sys.modules} & "
            f"{set(QT_OR_APP | TORCH_ROOTS)!r})\n"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("module", sorted(TORCH_MODULES | LAZY_TORCH_IMPORTERS | {"engine.training.trainer"}))
def test_the_allow_lists_name_real_modules(module):
    assert module in MODULES


def test_cli_help_lists_commands_without_qt():
    proc = subprocess.run([sys.executable, "main.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0
    for command in ("models", "segment", "bench", "annotate", "train", "eval"):
        assert command in proc.stdout
