"""The model registry: ``<models_dir>/manifest.json`` plus one ONNX file per model.

The engine lists and loads models only through here, so every model carries its
classes, palette, input policy, checksum and provenance (how it was made, what it measured).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ModelNotFound, StudioError
from ..fileio import atomic_write_text, folder_lock, os_reason, remove_quietly

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
REPO_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
VARIANT_ORDER = {"tiny": 0, "small": 1, "base": 2, "base-cityscapes": 3}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_model_name(name: str) -> str:
    """A model name is a plain file name: letters, digits, ``-_.``, no ``..``, no separators.

    It becomes ``<models_dir>/<name>.onnx``, so anything else could write outside the folder.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise StudioError(f"invalid model name {name!r}: use letters, digits and -_. (no '..', no path separators)")
    return name


def _entry_problem(d: object) -> str | None:
    """Why a manifest entry cannot be used, or None."""
    if not isinstance(d, dict):
        return "not an object"
    for key in ("name", "variant", "dataset", "onnx", "sha256", "classes", "palette"):
        if key not in d:
            return f"no {key!r} field"
    try:
        check_model_name(d["name"])
    except StudioError as exc:
        return str(exc)
    onnx = d["onnx"]
    if not isinstance(onnx, str) or not onnx or Path(onnx).name != onnx or onnx in (".", ".."):
        return f"'onnx' must be a file name inside the models folder, not {onnx!r}"
    if not isinstance(d["sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", d["sha256"]):
        return "'sha256' must be 64 lowercase hex digits"
    classes = d["classes"]
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        return "'classes' must be a non-empty list of names"
    palette = d["palette"]
    if not isinstance(palette, list) or len(palette) != len(classes):
        return f"'palette' must hold one colour per class ({len(classes)})"
    for colour in palette:
        if (not isinstance(colour, list) or len(colour) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)):
            return f"'palette' has a bad colour {colour!r} (want [R, G, B] with 0..255)"
    policy = d.get("input", {"multiple": 32})
    multiple = policy.get("multiple", 32) if isinstance(policy, dict) else None
    if not isinstance(multiple, int) or isinstance(multiple, bool) or not 1 <= multiple <= 1024:
        return f"'input.multiple' must be a positive integer, not {multiple!r}"
    acc = d.get("accuracy")
    if acc is not None and (not isinstance(acc, dict) or not all(
            not isinstance(v, float) or math.isfinite(v) for v in acc.values())):
        return "'accuracy' must be an object of finite numbers"
    return None


def default_models_dir() -> Path:
    """STUDIO_MODELS_DIR if set, else the repository's models/."""
    return Path(os.environ.get("STUDIO_MODELS_DIR") or REPO_MODELS_DIR)


@dataclass
class ModelEntry:
    name: str
    variant: str
    dataset: str
    classes: list[str]
    palette: list[list[int]]  # RGB per class
    onnx: str  # file name inside the models folder
    sha256: str
    made_by: str  # how the file was made (command line)
    input: dict = field(default_factory=lambda: {"multiple": 32, "mode": "native"})
    accuracy: dict | None = None  # e.g. {"split": "val", "miou": 0.6, "pixel_acc": 0.9, "measured_by": "..."}
    notes: str = ""
    # How the project's own training made it (run, command, epochs, wall time, recipe), so a
    # shipped model can be reproduced and compared; None for imported models.
    training: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_multiple(self) -> int:
        return int(self.input.get("multiple", 32))

    @property
    def best_long_side(self) -> int | None:
        """The input long side the model is most accurate at, if measured (``input.best_long_side``):
        ``full``/``half`` never feed it more (models trained on small frames lose accuracy on
        720p frames at full size)."""
        value = self.input.get("best_long_side")
        return int(value) if value else None

    @property
    def accuracy_long_side(self) -> int | None:
        """The network input's long side behind the manifest's accuracy figures, if known: the
        long side of the frames they were measured on (``input.best_measured.frames_long_side``),
        at scale 1. Why: ``full`` is another input size on every source, and a figure holds for
        about the input it was measured at (480 px for CamVid, where a 720p frame at ``full`` is 960)."""
        frames = (self.input.get("best_measured") or {}).get("frames_long_side")
        scale = str((self.accuracy or {}).get("scale", "full"))
        return int(frames) if isinstance(frames, (int, float)) and frames > 0 and scale in ("full", "1", "1.0") else None

    @property
    def unseen_drive_miou(self) -> tuple[float, str, bool] | None:
        """(mIoU, drive, is_estimate) on a CamVid drive the model never trained on, if known.

        Val shares a drive with training and flatters models; footage users bring is unseen.
        Measured on this very model when it trained with a drive held out
        (``accuracy.holdout``); otherwise the held-out run of its recipe, at its last epoch
        (``training.selection`` of a refit, ``training.holdout_estimate``): an estimate; with one
        such run per drive (``training.unseen_drives``), their mean, drives joined by "+". An INT8
        copy carries its FP32 source's figure (``training.quantized_from.unseen_drive``), also an
        estimate."""
        held = (self.accuracy or {}).get("holdout") or {}
        if isinstance(held.get("miou"), (int, float)):
            return float(held["miou"]), str(held.get("drive", "?")), False
        training = self.training or {}
        source = (training.get("quantized_from") or {}).get("unseen_drive") or {}
        if isinstance(source.get("miou"), (int, float)):
            return float(source["miou"]), str(source.get("drive", "?")), True
        drives = training.get("unseen_drives") or {}
        if isinstance(drives.get("mean"), (int, float)):
            return float(drives["mean"]), "+".join(drives.get("drives") or {}), True
        for key in ("selection", "holdout_estimate"):
            record = training.get(key) or {}
            value = (record.get("last") or {}).get("miou_holdout")
            if isinstance(value, (int, float)):
                return float(value), str(record.get("holdout_drive", "?")), True
        return None

    def unseen_text(self) -> str:
        """e.g. ``unseen drive 0006R0 mIoU 45.5 (estimate)`` or ``unseen drives 0006R0, 0001TP:
        mean mIoU 47.9 (estimate)``; "" when not known."""
        unseen = self.unseen_drive_miou
        if unseen is None:
            return ""
        miou, drive, estimate = unseen
        return f"{unseen_where(drive)} mIoU {100 * miou:.1f}" + (" (estimate)" if estimate else "")

    def describe(self) -> str:
        """One line for lists and pickers: name, variant, dataset, accuracy."""
        acc = ""
        if self.accuracy and "miou" in self.accuracy:
            acc = f", {self.accuracy.get('split', '')} mIoU {100 * self.accuracy['miou']:.1f}".replace(" ,", ",")
        return f"{self.name} ({self.variant}, {self.dataset}{acc})"

    @classmethod
    def from_dict(cls, data: dict) -> "ModelEntry":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{"made_by": "", **{k: v for k, v in data.items() if k in known}})


def unseen_where(drive: str) -> str:
    """``unseen drive 0006R0``, or ``unseen drives 0006R0, 0001TP: mean`` for the mean of
    several (``ModelEntry.unseen_drive_miou`` joins them with "+")."""
    drives = drive.split("+")
    return f"unseen drive {drive}" if len(drives) == 1 else f"unseen drives {', '.join(drives)}: mean"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Registry:
    """Read and update one models folder."""

    def __init__(self, models_dir: Path | str | None = None):
        self.dir = Path(models_dir) if models_dir else default_models_dir()

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    def _load(self) -> list[dict]:
        if not self.manifest_path.is_file():
            return []
        try:
            data = json.loads(self.manifest_path.read_text())
            models = list(data["models"])
        except OSError as exc:
            raise StudioError(f"cannot read {self.manifest_path}: {os_reason(exc)}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise StudioError(f"{self.manifest_path} is not a valid model manifest ({exc})") from None
        for i, d in enumerate(models):
            problem = _entry_problem(d)
            if problem:
                label = repr(d["name"]) if isinstance(d, dict) and isinstance(d.get("name"), str) else f"#{i + 1}"
                raise StudioError(f"{self.manifest_path}: model entry {label}: {problem}")
        return models

    def entries(self) -> list[ModelEntry]:
        items = [ModelEntry.from_dict(d) for d in self._load()]
        return sorted(items, key=lambda e: (e.dataset, VARIANT_ORDER.get(e.variant, 9), e.name))

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def get(self, name: str) -> ModelEntry:
        for entry in self.entries():
            if entry.name == name:
                return entry
        hits = self._short_form_hits(name)
        if len(hits) > 1:
            raise ModelNotFound(f"model {name!r} is ambiguous: {', '.join(hits)}")
        have = ", ".join(self.names()) or "none"
        raise ModelNotFound(f"no model named {name!r} in {self.dir} (installed: {have})")

    def _short_form_hits(self, name: str) -> list[str]:
        low = name.strip().lower()
        return [n for n in self.names() if n.lower() == low or n.lower().endswith("-" + low)]

    def resolve(self, name: str) -> ModelEntry:
        """An installed model by exact name, else by unique short form (``tiny`` -> ``camvid-tiny``),
        which every command and the app accept wherever a model is named."""
        key = name.strip()
        if key not in self.names():
            hits = self._short_form_hits(key)
            if len(hits) == 1:
                key = hits[0]
        return self.get(key)  # an unknown or ambiguous name: ModelNotFound, naming the models

    def onnx_path(self, entry: ModelEntry) -> Path:
        return self.dir / entry.onnx

    def verify(self, entry: ModelEntry) -> Path:
        """The entry's ONNX path after checking it exists and matches its checksum."""
        path = self.onnx_path(entry)
        if not path.is_file():
            raise ModelNotFound(f"model {entry.name!r}: file {path} is missing")
        if sha256_of(path) != entry.sha256:
            raise StudioError(f"model {entry.name!r}: {path} does not match its manifest checksum (damaged or replaced)")
        return path

    def add(self, entry: ModelEntry, onnx_file: Path, move: bool = False) -> ModelEntry:
        """Install ``onnx_file`` as ``<name>.onnx`` and record ``entry`` (replacing one of that name).

        The ONNX file is copied under a temporary name and renamed, and the manifest is
        rewritten atomically, so an interruption never leaves a half-written model.
        """
        check_model_name(entry.name)
        self._load()  # a broken manifest is reported before anything is written
        entry.onnx = f"{entry.name}.onnx"
        entry.sha256 = sha256_of(Path(onnx_file))
        target = self.dir / entry.onnx
        if os.path.lexists(target) and not target.is_file():
            raise StudioError(f"cannot install model {entry.name!r}: {target} exists and is not a regular file")
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudioError(f"cannot install model {entry.name!r} in {self.dir}: {os_reason(exc)}") from None
        with folder_lock(self.dir):  # another process's change made meanwhile is read again, not lost
            return self._install(entry, Path(onnx_file), target, self._load(), move)

    def _install(self, entry: ModelEntry, onnx_file: Path, target: Path, existing: list[dict], move: bool) -> ModelEntry:
        """The part of :meth:`add` that runs under the folder lock: place the file, then the entry."""
        backup = None
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{entry.onnx}.", dir=self.dir)
            os.close(fd)
            (shutil.move if move else shutil.copyfile)(str(onnx_file), tmp)
            os.chmod(tmp, 0o644)
            if target.is_file():  # kept until the manifest names the new file
                backup = target.with_name(f".{entry.onnx}.old")
                os.replace(target, backup)
            os.replace(tmp, target)
        except OSError as exc:
            if tmp:
                remove_quietly(tmp)
            if backup is not None:
                os.replace(backup, target)
            raise StudioError(f"cannot install model {entry.name!r} in {self.dir}: {os_reason(exc)}") from None
        names = [d.get("name") for d in existing]  # a replaced entry keeps its place (a small manifest diff)
        models = list(existing)
        if entry.name in names:
            models[names.index(entry.name)] = asdict(entry)
        else:
            models.append(asdict(entry))
        try:
            self._write(models)
        except BaseException:
            remove_quietly(target)  # no ONNX file without its manifest entry
            if backup is not None:
                os.replace(backup, target)
            raise
        if backup is not None:
            remove_quietly(backup)
        return entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (manifest first, so an interruption never leaves an entry without its file)."""
        with folder_lock(self.dir):
            models = self._load()
            entry = next((d for d in models if d.get("name") == name), None)
            if entry is None:
                raise ModelNotFound(f"no model named {name!r} in {self.dir}")
            self._write([d for d in models if d.get("name") != name])
            onnx = entry.get("onnx")
            if onnx and not any(d.get("onnx") == onnx for d in models if d is not entry):
                (self.dir / onnx).unlink(missing_ok=True)

    def update_input(self, name: str, **fields) -> None:
        """Set keys of a model's ``input`` (e.g. ``best_long_side``); ``None`` removes one."""
        self._update_section(name, "input", fields, default={"multiple": 32, "mode": "native"})

    def update_training(self, name: str, **fields) -> None:
        """Set keys of a model's ``training`` record (e.g. ``holdout_estimate``); ``None`` removes one."""
        self._update_section(name, "training", fields)

    def update_accuracy(self, name: str, accuracy: dict) -> None:
        self._update(name, lambda d: d.update(accuracy=accuracy))

    def _update_section(self, name: str, section: str, fields: dict, default: dict | None = None) -> None:
        def apply(d: dict) -> None:
            merged = {**(d.get(section) or default or {}), **fields}
            d[section] = {k: v for k, v in merged.items() if not (k in fields and v is None)}  # others kept as they are
        self._update(name, apply)

    def _update(self, name: str, change) -> None:
        """Apply ``change`` to the manifest dict of model ``name`` and write the manifest (atomically)."""
        with folder_lock(self.dir):
            models = self._load()
            for d in models:
                if d.get("name") == name:
                    change(d)
                    self._write(models)
                    return
        raise ModelNotFound(f"no model named {name!r} in {self.dir}")

    def _write(self, models: list[dict]) -> None:
        text = json.dumps({"schema_version": SCHEMA_VERSION, "models": models}, indent=1) + "\n"
        atomic_write_text(self.manifest_path, text)
