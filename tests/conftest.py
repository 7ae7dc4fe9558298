"""Shared test fixtures.

Tests that read ../shared carry ``@pytest.mark.shared``: without ../shared they are
skipped with a visible reason; with STUDIO_REQUIRE_SHARED=1 (set by .ci/run) that skip
becomes a failure. Tests that need torch carry ``@pytest.mark.torch`` likewise (CI installs it).
"""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("STUDIO_SHARED_DIR", REPO.parent / "shared"))
REQUIRE = os.environ.get("STUDIO_REQUIRE_SHARED") == "1"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# A shell starts a background job with Ctrl-C ignored, and an ignored signal stays ignored in
# every child: the Ctrl-C tests' commands would then never see it. A handler (unlike "ignore")
# is reset by exec, so the commands the tests start meet Ctrl-C as they would at a terminal.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_runtest_setup(item):
    if item.get_closest_marker("shared") and not SHARED.is_dir():
        if REQUIRE:
            pytest.fail(f"STUDIO_REQUIRE_SHARED=1 but ../shared is missing at {SHARED}", pytrace=False)
        pytest.skip(f"needs ../shared (not found at {SHARED})")
    if item.get_closest_marker("torch") and not _torch_available():
        if REQUIRE:
            pytest.fail("STUDIO_REQUIRE_SHARED=1 (CI) but torch is not installed", pytrace=False)
        pytest.skip("needs torch: pip install -e '.[train]'")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        if REQUIRE:
            pytest.fail(f"STUDIO_REQUIRE_SHARED=1 but ../shared is missing at {SHARED}")
        pytest.skip(f"needs ../shared (not found at {SHARED})")
    return SHARED


@pytest.fixture(scope="session")
def videos(shared_dir) -> Path:
    return shared_dir / "videos"


@pytest.fixture(scope="session")
def camvid(shared_dir) -> Path:
    """The labelled CamVid frames (train and val; the test split is held out and never read)."""
    return shared_dir / "datasets" / "camvid"


@pytest.fixture(scope="session")
def random_models_dir(tmp_path_factory, shared_dir) -> Path:
    """A models folder with the three official-format random checkpoints installed
    (ade20k classes): `tiny-random`, `small-random`, `base-random`, plus `ade20k-tiny`,
    the real ADE20K-trained Tiny. Built once per test session; tests must not modify it."""
    pytest.importorskip("torch")
    from engine.models.checkpoint import import_checkpoint

    out = tmp_path_factory.mktemp("models")
    ref = shared_dir / "reference"
    for variant in ("tiny", "small", "base"):
        import_checkpoint(ref / f"random-{variant}.pth", "ade20k", name=f"{variant}-random", models_dir=out,
                          made_by="tests/conftest.py")
    import_checkpoint(ref / "topformer-tiny-ade20k.pth", "ade20k", name="ade20k-tiny", models_dir=out,
                      made_by="tests/conftest.py")
    return out


@pytest.fixture
def models_copy(tmp_path, random_models_dir) -> Path:
    """A private, writable copy of random_models_dir."""
    out = tmp_path / "models"
    shutil.copytree(random_models_dir, out)
    return out


@pytest.fixture(scope="session")
def shipped_models_dir() -> Path:
    """The repository's models/ folder (camvid-tiny, -small, -base): real ONNX files, no torch
    export needed. Read-only for tests: use a copy to install or remove models."""
    return REPO / "models"


@pytest.fixture
def shipped_models_copy(tmp_path, shipped_models_dir) -> Path:
    """A private, writable copy of the shipped models (for tests that damage or add a model)."""
    out = tmp_path / "models"
    shutil.copytree(shipped_models_dir, out)
    return out
