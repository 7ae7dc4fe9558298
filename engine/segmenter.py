"""Old path of engine.run.segmenter, kept for users' scripts (engine/ is grouped by role)."""
from .run.segmenter import *  # noqa: F401,F403
