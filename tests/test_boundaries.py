"""Architecture rules that keep the Raspberry Pi install small and the layers apart."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME_MODULES = ["engine.segmenter", "engine.overlay", "engine.sources", "engine.registry", "engine.runtime",
                   "engine.bench", "engine.download", "engine.datasets", "engine.cli",
                   "engine.cli.models_cmd", "engine.cli.segment_cmd", "engine.cli.bench_cmd"]


def test_runtime_engine_imports_neither_torch_nor_qt():
    code = ("import sys, importlib\n"
            f"for m in {RUNTIME_MODULES!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'qdarktheme', 'app'))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_engine_sources_never_import_app_or_qt():
    pattern = re.compile(r"^\s*(from|import)\s+(app|PySide6|qdarktheme)\b", re.M)
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "engine").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_cli_help_lists_commands_without_qt():
    proc = subprocess.run([sys.executable, "main.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0
    for command in ("models", "segment", "bench", "annotate", "train", "eval"):
        assert command in proc.stdout
