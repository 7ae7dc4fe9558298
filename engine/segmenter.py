"""Old path of engine.run.segmenter, kept for users' scripts (engine/ is grouped by role)."""
from .run.segmenter import (  # noqa: F401
    CancelToken, InferenceCancelled, MAX_INPUT_SIDE, Segmenter,
)
