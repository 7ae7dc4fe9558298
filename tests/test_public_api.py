"""The engine's public surface, as users' scripts call it (issue 12: stable, importable from `engine`)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_public_surface_is_importable_from_engine():
    """Users' scripts: `from engine import Segmenter`, segment -> SegResult, input_size, onnx_path."""
    code = ("import sys, engine; assert 'onnxruntime' not in sys.modules; "
            "from engine import Segmenter, SegResult; import numpy as np; "
            "seg = Segmenter.load('camvid-tiny'); r = seg.segment(np.zeros((96, 128, 3), np.uint8), 'half'); "
            "assert isinstance(r, SegResult) and r.labels.shape == (96, 128); "
            "assert seg.input_size((720, 1280), 'half') == (352, 640) and seg.onnx_path.is_file(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
