"""User-facing errors: the CLI prints their message as one line and exits 2; the GUI shows it."""
from __future__ import annotations


class StudioError(Exception):
    """A problem the user can fix (bad file, unknown model, unwritable folder...)."""


class ModelNotFound(StudioError):
    pass


class CheckpointError(StudioError):
    pass


class SourceError(StudioError):
    """A frame source that cannot be opened or stopped delivering frames."""
