"""Old path of engine.models.registry, kept for users' scripts (engine/ is grouped by role)."""
from .models.registry import (  # noqa: F401
    MANIFEST, ModelEntry, REPO_MODELS_DIR, Registry, SCHEMA_VERSION, VARIANT_ORDER,
    check_model_name, default_models_dir, sha256_of,
)
