"""Well-known paths, in one place: the repository's models folder and the shared datasets."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"
# The shared reference material sits beside a development checkout (never in a user's clone).
SHARED_DIR = Path("../shared")
CAMVID_DIR = SHARED_DIR / "datasets" / "camvid"
DEFAULT_CAMVID = str(CAMVID_DIR)
