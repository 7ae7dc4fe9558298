"""Official mmseg TopFormer checkpoints: read, detect the variant from shapes, install as ONNX."""
from __future__ import annotations

import pickle
import shlex
import sys
import tempfile
import zipfile
from pathlib import Path

from .datasets import dataset_for_classes, dataset_info, known_datasets
from ..errors import CheckpointError, StudioError
from ..fileio import os_reason
from .registry import ModelEntry, Registry, check_model_name

PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def check_container(path: Path) -> None:
    """Refuse what is not a PyTorch checkpoint before unpickling: text/HTML, or a zip with a bad CRC.

    torch.load does not verify the zip's CRCs, so bytes damaged in the middle of a tensor
    would load as garbage (NaN weights); every member is checked here instead.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {os_reason(exc)}") from None
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (damaged or truncated zip)") from None
        if bad is not None:
            raise CheckpointError(f"{path} is damaged: member {bad} fails its CRC check (corrupt download or disk)")
        return
    if head[:2] in PICKLE_MAGIC:
        return  # the legacy (pre-zip) torch format carries no checksum; the finite-weights check still runs
    lower = head.lstrip().lower()
    if lower.startswith((b"<!doctype", b"<html")) or b"<html" in lower:
        raise CheckpointError(f"{path} is a web page (HTML), not a PyTorch checkpoint")
    what = "a text file" if head and all(32 <= b < 127 or b in b"\r\n\t" for b in head) else "not a PyTorch checkpoint"
    raise CheckpointError(f"{path} is {what}, not a PyTorch checkpoint" if what == "a text file" else f"{path} is {what}")


def check_finite(path: Path, state_dict: dict) -> None:
    """Every floating-point tensor holds finite numbers (NaN/inf weights give garbage masks)."""
    import torch

    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: tensor {key} holds NaN or infinite values (damaged checkpoint)")


def read_state_dict(path: Path) -> dict:
    """The tensors of a checkpoint file: ``{"state_dict": ...}``, ``{"model": ...}`` or a bare state_dict."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    check_container(path)
    try:
        # weights_only: never run code from a downloaded file.
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError,
            KeyError, TypeError, IndexError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt, truncated or another format)") from None
    if isinstance(data, dict):
        for key in ("state_dict", "state_dict_ema", "model"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not data or not all(isinstance(k, str) for k in data):
        raise CheckpointError(f"{path} holds no state_dict")
    if not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} holds non-tensor entries where weights were expected")
    state_dict = {k.removeprefix("module."): v for k, v in data.items()}
    check_finite(path, state_dict)
    return state_dict


def detect_variant(state_dict: dict) -> tuple[str, int]:
    """(variant, num_classes) whose official layout matches every key and shape exactly."""
    from .topformer import VARIANTS, create_model

    seg = state_dict.get("decode_head.conv_seg.weight")
    if seg is None or seg.ndim != 4:
        raise CheckpointError("not a TopFormer segmentation checkpoint (no decode_head.conv_seg.weight)")
    num_classes = int(seg.shape[0])
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    for variant in VARIANTS:
        expected = {k: tuple(v.shape) for k, v in create_model(variant, num_classes).state_dict().items()}
        if expected == shapes:
            return variant, num_classes
    raise CheckpointError(
        f"unknown layout: the checkpoint's {len(shapes)} tensors match none of the TopFormer variants "
        f"({', '.join(VARIANTS)}) in the official mmseg layout"
    )


def load_model(path: Path):
    """A TopFormer in eval mode with the checkpoint's weights (strict), plus its variant name."""
    from .topformer import create_model

    state_dict = read_state_dict(path)
    variant, num_classes = detect_variant(state_dict)
    model = create_model(variant, num_classes)
    model.load_state_dict(state_dict, strict=True)
    return model.eval(), variant


def import_checkpoint(path: Path, dataset: str | None, name: str | None = None, models_dir: Path | None = None,
                      made_by: str | None = None, accuracy: dict | None = None, notes: str = "",
                      expected_variant: str | None = None) -> ModelEntry:
    """Export an official checkpoint to ONNX and register it; nothing is written on failure.

    ``dataset=None``: the known dataset with the checkpoint's class count (150: ade20k,
    19: cityscapes, 11: camvid); an official checkpoint does not name its classes."""
    from .export import export_onnx

    if name is not None:
        check_model_name(name)
    if dataset is not None:
        dataset_info(dataset)  # an unknown name is refused before the checkpoint is read
    model, variant = load_model(Path(path))
    if dataset is None:
        dataset = dataset_for_classes(model.num_classes)
        if dataset is None:
            raise CheckpointError(f"{Path(path).name} predicts {model.num_classes} classes, which no known dataset has "
                                  f"({', '.join(known_datasets())}); give --dataset")
    info = dataset_info(dataset)
    if expected_variant and variant != expected_variant:
        raise CheckpointError(f"{Path(path).name} is a TopFormer-{variant}, not the expected {expected_variant}")
    if model.num_classes != info.num_classes:
        raise CheckpointError(
            f"class-count mismatch: the checkpoint predicts {model.num_classes} classes, "
            f"dataset {dataset!r} has {info.num_classes}"
        )
    name = name or f"{dataset}-{variant}"
    registry = Registry(models_dir)
    registry.entries()  # a broken manifest is reported before the export
    if not registry.dir.parent.is_dir():
        raise StudioError(f"cannot write to models folder {registry.dir}: folder {registry.dir.parent} does not exist")
    try:
        registry.dir.mkdir(exist_ok=True)  # the folder itself may be new; never a chain of folders
        workdir = tempfile.TemporaryDirectory(dir=registry.dir, prefix=".import-")
    except OSError as exc:
        raise StudioError(f"cannot write to models folder {registry.dir}: {os_reason(exc)}") from None
    with workdir as tmp:
        try:
            onnx_tmp = export_onnx(model, Path(tmp) / "model.onnx", metadata={"name": name, "dataset": dataset})
        except OSError as exc:
            raise StudioError(f"cannot write to models folder {registry.dir}: {os_reason(exc)}") from None
        entry = ModelEntry(
            name=name, variant=variant, dataset=dataset, classes=list(info.classes),
            palette=[list(c) for c in info.palette], onnx="", sha256="",
            made_by=made_by or "python main.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            accuracy=accuracy, notes=notes or f"imported from official-format checkpoint {Path(path).name}",
        )
        return registry.add(entry, onnx_tmp, move=True)
