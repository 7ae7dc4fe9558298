"""Which installed model to use: at start-up, and when the user presses 1/2/3 (Tiny/Small/Base).

Pure functions over registry entries, so the policy is testable without a window.
"""
from __future__ import annotations

from engine.models.registry import ModelEntry

DEFAULT_MODEL = "camvid-tiny"
VARIANT_KEYS = ("tiny", "small", "base")


def initial_model(entries: list[ModelEntry], requested: str | None, saved: str | None) -> str | None:
    """The requested model, else the last used, else camvid-tiny, else the first installed."""
    names = [e.name for e in entries]
    for name in (requested, saved, DEFAULT_MODEL):
        if name and name in names:
            return name
    return names[0] if names else None


def _stem(entry: ModelEntry) -> str:
    """The name with its variant word removed (``tiny-random`` -> ``-random``), to find siblings."""
    return entry.name.replace(entry.variant, "", 1) if entry.variant in entry.name else entry.name


def variant_sibling(entries: list[ModelEntry], current: ModelEntry | None, variant: str) -> ModelEntry | None:
    """The model of ``variant`` for the current dataset, preferring the same family of names
    (tiny-random -> small-random), then a model with measured accuracy, then the first."""
    dataset = current.dataset if current is not None else None
    pool = [e for e in entries if e.variant == variant and (dataset is None or e.dataset == dataset)]
    if not pool:
        return None
    if current is not None:
        same_family = [e for e in pool if _stem(e) == _stem(current)]
        if same_family:
            return same_family[0]
    measured = [e for e in pool if e.accuracy]
    return (measured or pool)[0]


def available_variants(entries: list[ModelEntry], current: ModelEntry | None) -> set[str]:
    dataset = current.dataset if current is not None else None
    return {e.variant for e in entries if dataset is None or e.dataset == dataset}
