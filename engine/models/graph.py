"""The shipped ONNX graph's layout and metadata: write at export, read back and check at load.

Layout (``GRAPH_FORMAT``): input ``image`` uint8 [1, H, W, 3] BGR, H and W multiples of
the model's input multiple; output ``logits`` float32 [1, C, H/8, W/8], the output of the
segmentation head's last Conv (its node name keeps ``conv_seg``). BGR->RGB and the
mean/std normalisation are inside the graph, and the exposure gain for models that have one
(engine/models/exposure.py, metadata ``exposure``); everything after the logits (upsample,
argmax, confidence) is ``engine/run/postprocess.py``.

Metadata (``metadata_props``, JSON-encoded values): variant, dataset, classes, palette
(RGB), input_multiple, normalisation, graph. The loader compares them with the manifest
entry, so a file swapped under another model's name is refused in one line.

``python -m engine.models.graph IN OUT [--name N --dataset D]`` converts an older file (labels
output with an ``out_size`` input) to this layout by cutting it at conv_seg (needs onnx).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import StudioError

GRAPH_FORMAT = "topformer-studio/logits-v2"
LEGACY_FORMAT = "topformer-studio/labels-v1"  # image + out_size -> uint8 labels (before logits-v2)
MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)
NORMALISATION = {"order": "BGR in, RGB to the network", "mean_rgb": list(MEAN_RGB), "std_rgb": list(STD_RGB)}
OUTPUT_STRIDE = 8


def model_metadata(variant: str, dataset: str | None, classes, palette, input_multiple: int = 32, **extra) -> dict:
    """The metadata every exported file carries (values JSON-encodable)."""
    meta = {"graph": GRAPH_FORMAT, "variant": variant, "num_classes": len(classes), "classes": list(classes),
            "palette": [list(map(int, c)) for c in palette], "input_multiple": int(input_multiple),
            "normalisation": NORMALISATION}
    if dataset:
        meta["dataset"] = dataset
    meta.update(extra)
    return meta


def decode_metadata(raw: dict[str, str]) -> dict:
    """``metadata_props`` / ORT ``custom_metadata_map`` (JSON strings) -> values; non-JSON kept as text."""
    out = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except (ValueError, TypeError):
            out[key] = value
    return out


def check_against_manifest(meta: dict, entry, path: Path) -> None:
    """Raise a one-line StudioError when the file's metadata contradicts the manifest entry.

    Keys the file does not carry (older exports) are not checked.
    """
    expect = {"variant": entry.variant, "dataset": entry.dataset, "classes": list(entry.classes),
              "num_classes": len(entry.classes), "palette": [list(map(int, c)) for c in entry.palette],
              "input_multiple": entry.input_multiple}
    for key, want in expect.items():
        if key in meta and meta[key] != want:
            have = meta[key]
            if isinstance(want, list):
                have, want = f"{len(have)} items" if isinstance(have, list) else have, f"{len(want)} items"
                if have == want:
                    have, want = "different values", "the manifest's"
            raise StudioError(f"model {entry.name!r}: {path} says {key} = {have}, the manifest says {want} "
                              "(file and manifest entry do not belong together)")


def conv_seg_output(model) -> str:
    """Name of the tensor the last ``conv_seg`` Conv writes (the logits)."""
    heads = [n for n in model.graph.node if n.op_type == "Conv" and "conv_seg" in n.name]
    if not heads:
        raise StudioError("no Conv node named like conv_seg: cannot find the network's logits")
    return heads[-1].output[0]


def cut_to_logits(model, metadata: dict | None = None):
    """An ONNX ModelProto of the network alone: ``image`` -> ``logits`` (cut at conv_seg).

    Keeps every node name; renames only the cut tensor to ``logits`` and drops inputs
    the network does not use (``out_size`` of the older layout).
    """
    import onnx
    import onnx.utils

    out = conv_seg_output(model)
    if out not in {o.name for o in model.graph.output}:
        model.graph.value_info.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None))
    sub = onnx.utils.Extractor(model).extract_model(["image"], [out])
    for node in sub.graph.node:
        node.output[:] = ["logits" if o == out else o for o in node.output]
    del sub.graph.output[:]
    sub.graph.output.append(onnx.helper.make_tensor_value_info(
        "logits", onnx.TensorProto.FLOAT, [1, None, "logit_height", "logit_width"]))
    dims = sub.graph.output[0].type.tensor_type.shape.dim
    classes = (metadata or {}).get("num_classes")
    if classes:
        dims[1].dim_value = int(classes)
    else:
        dims[1].dim_param = "classes"
    sub.ir_version, sub.producer_name = model.ir_version, model.producer_name or "topformer-studio"
    del sub.opset_import[:]
    sub.opset_import.extend(model.opset_import)
    set_metadata(sub, metadata or {})
    return sub


def without_exposure(model):
    """The ModelProto with its exposure gain taken out: the network sees the frame as given.

    Why: a distillation teacher is shown training crops that the run may already have
    brightened (``--exposure-target``); its own gain, worked out from a crop's mean rather
    than the frame's, would brighten them again. Files without the gain come back unchanged.
    The gain's last step is the only ``Round`` before the network; the ``Clip`` after it is
    bypassed by the ``Mul``'s unscaled input and what then feeds nothing is dropped."""
    import onnx
    import onnx.utils

    rounds = [i for i, n in enumerate(model.graph.node) if n.op_type == "Round" and not n.name.startswith("/model/")]
    if not rounds:
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())  # the caller's proto stays as it was
    nodes = list(model.graph.node)
    (rnd,) = [nodes[i] for i in rounds]
    scale = next(n for n in nodes if rnd.input[0] in n.output and n.op_type == "Mul")
    clip = next(n for n in nodes if rnd.output[0] in n.input and n.op_type == "Clip")
    frame, brightened = scale.input[0], clip.output[0]
    for node in nodes:
        node.input[:] = [frame if name == brightened else name for name in node.input]
    output = model.graph.output[0].name
    stripped = onnx.utils.Extractor(model).extract_model(["image"], [output])
    stripped.ir_version = model.ir_version
    del stripped.opset_import[:]
    stripped.opset_import.extend(model.opset_import)
    set_metadata(stripped, {k: v for k, v in decode_metadata({p.key: p.value for p in model.metadata_props}).items()
                            if k != "exposure"})
    return stripped


def set_metadata(model, metadata: dict) -> None:
    """Replace the ModelProto's metadata_props with ``metadata`` (values JSON-encoded)."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, json.dumps(value)


def convert_file(src: Path, dst: Path, name: str | None = None, dataset: str | None = None) -> Path:
    """Rewrite an older labels-output file as a logits-output file with full metadata."""
    import onnx

    from .datasets import dataset_info
    from ..fileio import atomic_write_bytes

    model = onnx.load(str(src))
    old = decode_metadata({p.key: p.value for p in model.metadata_props})
    dataset = dataset or old.get("dataset")
    if not dataset:
        raise StudioError(f"{src}: no dataset in its metadata; pass --dataset")
    info = dataset_info(dataset)
    extra = {"name": name or old.get("name")} if (name or old.get("name")) else {}
    meta = model_metadata(old.get("variant", "unknown"), dataset, info.classes, info.palette,
                          int(old.get("input_multiple", 32)), **extra)
    sub = cut_to_logits(model, meta)
    onnx.checker.check_model(sub)
    atomic_write_bytes(Path(dst), sub.SerializeToString())
    return Path(dst)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.models.graph", description=convert_file.__doc__)
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--name")
    parser.add_argument("--dataset")
    args = parser.parse_args(argv)
    try:
        convert_file(Path(args.src), Path(args.dst), args.name, args.dataset)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
