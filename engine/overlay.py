"""Old path of engine.run.overlay, kept for users' scripts (engine/ is grouped by role)."""
from .run.overlay import (  # noqa: F401
    blend, boundary_mask, class_areas, color_lut, colorize, present_classes,
)
