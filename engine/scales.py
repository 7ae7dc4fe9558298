"""The scale vocabulary, in one place: ``full``, ``half`` or a factor, and rounding to the network's multiple.

Every command, the app and the engine parse a user's scale through :func:`parse_scale`,
so ``--scale 0.75`` means the same thing everywhere and a typo is one clear error.
"""
from __future__ import annotations

from collections.abc import Sequence

from .errors import StudioError

Scale = str | float
SCALE_NAMES: dict[str, float] = {"full": 1.0, "half": 0.5}
# "best": the input size the model is most accurate at (its manifest's best_long_side), larger
# or smaller than the frame; a model without one runs at full. Resolved by the Segmenter.
BEST = "best"
MIN_FACTOR, MAX_FACTOR = 0.05, 4.0


def parse_scale(value: Scale) -> float:
    """The factor of a scale: ``"full"`` -> 1.0, ``"half"`` -> 0.5, ``0.75`` or ``"0.75"`` -> 0.75;
    ``"best"`` -> 1.0 here (the Segmenter turns it into the model's best input size)."""
    if isinstance(value, bool):
        raise StudioError(f"unknown scale {value!r}: use 'full', 'half', 'best' or a number")
    if isinstance(value, str):
        key = value.strip().lower()
        if key in SCALE_NAMES:
            return SCALE_NAMES[key]
        if key == BEST:
            return 1.0
        try:
            factor = float(key)
        except ValueError:
            raise StudioError(f"unknown scale {value!r}: use 'full', 'half', 'best' or a number") from None
    elif isinstance(value, (int, float)):
        factor = float(value)
    else:
        raise StudioError(f"unknown scale {value!r}: use 'full', 'half', 'best' or a number")
    if not MIN_FACTOR <= factor <= MAX_FACTOR:  # also refuses nan
        raise StudioError(f"scale {value} is out of range ({MIN_FACTOR}..{MAX_FACTOR})")
    return factor


def is_named(value: Scale) -> bool:
    """``full``/``half``/``best`` (a choice of quality, which a model's best input size may cap or
    set), as opposed to an explicit factor (a measurement, e.g. ``eval --scale 2.67``, never capped)."""
    return isinstance(value, str) and (value.strip().lower() in SCALE_NAMES or is_best(value))


def is_best(value: Scale) -> bool:
    """``best``: the model's best input size, up or down from the frame's."""
    return isinstance(value, str) and value.strip().lower() == BEST


def scale_name(value: Scale) -> str:
    """A scale as users write it: ``full``, ``half``, ``best`` or the factor (``0.75``)."""
    if is_best(value):
        return BEST
    factor = parse_scale(value)
    for name, f in SCALE_NAMES.items():
        if f == factor:
            return name
    return f"{factor:g}"


def parse_factors(text: str) -> tuple[float, ...]:
    """The factors of ``--multiscale``: ``"1,2"`` -> (1.0, 2.0), each checked like a scale, no repeats."""
    parts = str(text).split(",")
    if not all(p.strip() for p in parts):
        raise StudioError(f"--multiscale: expected factors like 1,2, not {text!r}")
    factors = tuple(parse_scale(p) for p in parts)
    if len(set(factors)) != len(factors):
        raise StudioError(f"--multiscale: a factor is repeated in {text!r}")
    return factors


def multiscale_factors(multiscale: str | Sequence[float] | None, scale: Scale = "full") -> tuple[float, ...] | None:
    """The ``--multiscale`` factors (None when not asked for); they replace ``--scale``, which must stay full."""
    if multiscale is None:
        return None
    factors = tuple(float(f) for f in multiscale) if not isinstance(multiscale, str) else parse_factors(multiscale)
    if parse_scale(scale) != 1.0:
        raise StudioError("--multiscale and --scale exclude each other: the factors say the sizes")
    return factors


def _checked_arg(parse, value: str) -> str:
    """An argparse ``type=``: ``parse`` checks the value (its error becomes argparse's), the spelling is kept."""
    import argparse

    try:
        parse(value)
    except StudioError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def scale_arg(value: str) -> str:
    """argparse ``type=`` for ``--scale``."""
    return _checked_arg(parse_scale, value)


def factors_arg(value: str) -> str:
    """argparse ``type=`` for ``--multiscale``."""
    return _checked_arg(parse_factors, value)


def round_to_multiple(value: float, multiple: int) -> int:
    """``value`` rounded to the nearest multiple of ``multiple`` (never below one multiple)."""
    if multiple <= 0:
        raise StudioError(f"input multiple must be a positive integer, not {multiple}")
    return max(multiple, int(round(value / multiple)) * multiple)
