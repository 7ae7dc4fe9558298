"""Old path of engine.models.registry, kept for users' scripts (engine/ is grouped by role)."""
from .models.registry import *  # noqa: F401,F403
