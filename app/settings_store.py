"""Every persisted setting behind typed getters, in one place (QSettings, INI format everywhere).

Benchmark and screenshot runs use ``SettingsStore.ephemeral()`` so a measurement neither
depends on nor changes what the user last did.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from engine.scales import BEST, SCALE_NAMES

ORGANIZATION = "TopFormerStudio"
APPLICATION = "TopFormer Studio"
SCALES = (*SCALE_NAMES, BEST)  # full, half, best: the scale choices of the live view
THEMES = ("dark", "light")


def _as_bool(value, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(value, (int, float)):
        return bool(value)
    return default


class SettingsStore:
    def __init__(self, settings: QSettings | None = None):
        self.qsettings = settings or QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                                               ORGANIZATION, APPLICATION)

    @classmethod
    def ephemeral(cls) -> "SettingsStore":
        """Defaults only, written to a throw-away file."""
        folder = tempfile.mkdtemp(prefix="studio-settings-")
        return cls(QSettings(str(Path(folder) / "settings.ini"), QSettings.Format.IniFormat))

    def _get(self, key: str, default=None):
        return self.qsettings.value(key, default)

    def _set(self, key: str, value) -> None:
        self.qsettings.setValue(key, value)

    def sync(self) -> None:
        self.qsettings.sync()

    # -- source ---------------------------------------------------------------------------
    @property
    def last_source(self) -> str | None:
        value = self._get("source/last")
        return str(value) if value not in (None, "") else None

    @last_source.setter
    def last_source(self, spec: str | None) -> None:
        """A file is kept as an absolute path: the next start may be from another folder."""
        if spec and not spec.isdigit():
            spec = os.path.abspath(spec)
        self._set("source/last", spec or "")

    @property
    def loop(self) -> bool:
        return _as_bool(self._get("source/loop", True), True)

    @loop.setter
    def loop(self, value: bool) -> None:
        self._set("source/loop", bool(value))

    @property
    def realtime(self) -> bool:
        """True: play files at their own fps; False: as fast as inference allows."""
        return _as_bool(self._get("source/realtime", True), True)

    @realtime.setter
    def realtime(self, value: bool) -> None:
        self._set("source/realtime", bool(value))

    @property
    def last_open_dir(self) -> str:
        return str(self._get("source/open_dir", "") or "")

    @last_open_dir.setter
    def last_open_dir(self, folder: str) -> None:
        self._set("source/open_dir", folder)

    # -- model ----------------------------------------------------------------------------
    @property
    def model(self) -> str | None:
        value = self._get("model/name")
        return str(value) if value not in (None, "") else None

    @model.setter
    def model(self, name: str | None) -> None:
        self._set("model/name", name or "")

    @property
    def scale(self) -> str:
        value = str(self._get("model/scale", "full"))
        return value if value in SCALES else "full"

    @scale.setter
    def scale(self, value: str) -> None:
        self._set("model/scale", value if value in SCALES else "full")

    # -- display --------------------------------------------------------------------------
    @property
    def opacity(self) -> float:
        try:
            return min(max(float(self._get("display/opacity", 0.5)), 0.0), 1.0)
        except (TypeError, ValueError):
            return 0.5

    @opacity.setter
    def opacity(self, value: float) -> None:
        self._set("display/opacity", round(float(value), 3))

    @property
    def boundaries(self) -> bool:
        return _as_bool(self._get("display/boundaries", False), False)

    @boundaries.setter
    def boundaries(self, value: bool) -> None:
        self._set("display/boundaries", bool(value))

    @property
    def mask_only(self) -> bool:
        return _as_bool(self._get("display/mask_only", False), False)

    @mask_only.setter
    def mask_only(self, value: bool) -> None:
        self._set("display/mask_only", bool(value))

    @property
    def show_stats(self) -> bool:
        return _as_bool(self._get("display/show_stats", True), True)

    @show_stats.setter
    def show_stats(self, value: bool) -> None:
        self._set("display/show_stats", bool(value))

    @property
    def theme(self) -> str:
        value = str(self._get("display/theme", "dark"))
        return value if value in THEMES else "dark"

    @theme.setter
    def theme(self, value: str) -> None:
        self._set("display/theme", value if value in THEMES else "dark")

    # -- capture --------------------------------------------------------------------------
    @property
    def output_dir(self) -> Path:
        value = self._get("capture/folder")
        if value:
            return Path(str(value))
        pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
        return Path(pictures or Path.home()) / "TopFormer Studio"

    @output_dir.setter
    def output_dir(self, folder: Path | str) -> None:
        self._set("capture/folder", str(folder))

    @property
    def annotate_dir(self) -> Path:
        """Where Annotate video… writes: remembered, by default under the user's Videos folder."""
        value = self._get("annotate/folder")
        if value:
            return Path(str(value))
        videos = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation)
        return Path(videos or Path.home()) / "TopFormer Studio"

    @annotate_dir.setter
    def annotate_dir(self, folder: Path | str) -> None:
        self._set("annotate/folder", str(folder))

    @property
    def palette(self) -> str:
        value = str(self._get("display/palette", "distinct"))
        return value if value in ("distinct", "dataset") else "distinct"

    @palette.setter
    def palette(self, value: str) -> None:
        self._set("display/palette", value)

    # -- models ----------------------------------------------------------------------------
    def speed_ms(self, sha256: str) -> float | None:
        """Measured ms per frame of the model file with this checksum on this machine (cached)."""
        try:
            value = self._get(f"speed/{sha256[:16]}")
            return float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    def set_speed_ms(self, sha256: str, ms: float) -> None:
        self._set(f"speed/{sha256[:16]}", float(ms))

    # -- window ---------------------------------------------------------------------------
    @property
    def geometry(self) -> QByteArray | None:
        value = self._get("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self._set("window/geometry", value)

    @property
    def splitter_state(self) -> QByteArray | None:
        value = self._get("window/splitter")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    @splitter_state.setter
    def splitter_state(self, value: QByteArray) -> None:
        self._set("window/splitter", value)
