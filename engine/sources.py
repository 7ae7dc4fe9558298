"""Old path of engine.io.sources, kept for users' scripts (engine/ is grouped by role)."""
from .io.sources import *  # noqa: F401,F403
