"""Class names and colours of the datasets the project knows (engine/data/<name>.json)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import StudioError

_DATA_DIR = Path(__file__).with_name("data")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # RGB per class
    ignore_index: int | None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def known_datasets() -> list[str]:
    return sorted(p.stem for p in _DATA_DIR.glob("*.json"))


@lru_cache(maxsize=None)
def dataset_info(name: str) -> DatasetInfo:
    path = _DATA_DIR / f"{name}.json"
    if not path.is_file():
        raise StudioError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}")
    data = json.loads(path.read_text())
    return DatasetInfo(
        name=data["name"],
        title=data["title"],
        classes=tuple(c["name"] for c in data["classes"]),
        palette=tuple(tuple(c["color"]) for c in data["classes"]),
        ignore_index=data["ignore_index"],
    )
