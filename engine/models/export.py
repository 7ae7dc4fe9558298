"""Export a TopFormer to ONNX: the network with its input normalisation, ending at the logits.

Graph (engine/models/graph.py, ``logits-v2``): ``image`` uint8 [1,H,W,3] BGR (H, W multiples
of 32) -> ``logits`` float32 [1,C,H/8,W/8]. Inside: the exposure gain when the model has one
(engine/models/exposure.py), BGR->RGB, mean/std normalisation,
the network, up to the segmentation head's last Conv (node name keeps ``conv_seg``).
Upsample and argmax are not in the graph: engine/run/postprocess.py computes them exactly,
only at class boundaries, for a few % of the network's time. Every file carries its
metadata (variant, dataset, classes, palette, input multiple, normalisation), read back
and checked against the manifest when the model is loaded.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ..fileio import atomic_output
from .graph import model_metadata, set_metadata
from .topformer import MEAN_RGB, STD_RGB, TopFormer

OPSET = 17
INPUT_MULTIPLE = 32


class DeployGraph(nn.Module):
    """uint8 BGR frame -> float logits at 1/8 resolution (what the ONNX file computes).

    ``exposure_target``: a frame whose mean pixel value is below it is first multiplied by
    ``target / mean`` (rounded, clipped at 255), exactly as ``exposure.brighten`` does in training."""

    def __init__(self, model: TopFormer, exposure_target: float | None = None):
        super().__init__()
        self.model = model
        self.exposure_target = exposure_target
        self.register_buffer("mean", torch.tensor(MEAN_RGB).reshape(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(STD_RGB).reshape(1, 3, 1, 1))
        self.register_buffer("bgr_to_rgb", torch.tensor([2, 1, 0]))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).index_select(1, self.bgr_to_rgb).to(torch.float32)
        if self.exposure_target:
            gain = torch.clamp(self.exposure_target / torch.clamp(x.mean(), min=1.0), min=1.0)
            x = torch.clamp(torch.round(x * gain), max=255.0)
        return self.model((x - self.mean) * self.inv_std)


def export_metadata(model: TopFormer, metadata: dict | None = None) -> dict:
    """The file's metadata: classes and palette from the dataset when one is named."""
    metadata = dict(metadata or {})
    dataset = metadata.pop("dataset", None)
    classes = metadata.pop("classes", None)
    palette = metadata.pop("palette", None)
    if dataset and (classes is None or palette is None):
        from .datasets import dataset_info

        info = dataset_info(dataset)
        classes = info.classes if classes is None else classes
        palette = info.palette if palette is None else palette
    if classes is None:
        classes = [f"class{i}" for i in range(model.num_classes)]
    if palette is None:
        palette = [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(len(classes))]
    return model_metadata(model.variant, dataset, classes, palette, INPUT_MULTIPLE, **metadata)


def export_onnx(model: TopFormer, path: Path, metadata: dict | None = None, sample_hw: tuple[int, int] = (256, 320),
                exposure_target: float | None = None) -> Path:
    """Write ``model`` (eval mode, BN folded by ORT) as a dynamic-size ONNX file at ``path``.

    The file is written to a temporary name first and renamed, so ``path`` is never half-written.
    ``metadata`` (e.g. name, dataset) joins the standard metadata in the model's metadata_props.
    ``exposure_target``: the graph brightens dark frames to this mean first (``DeployGraph``),
    recorded in the metadata as ``exposure``.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = DeployGraph(model.eval(), exposure_target).eval()
    if exposure_target:
        metadata = {**(metadata or {}), "exposure": {"target_mean": float(exposure_target)}}
    image = torch.randint(0, 256, (1, sample_hw[0], sample_hw[1], 3), dtype=torch.uint8)
    with atomic_output(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (image,),
                str(tmp),
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {1: "height", 2: "width"}, "logits": {2: "logit_height", 3: "logit_width"}},
                opset_version=OPSET,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        if not any(n.op_type == "Conv" and "conv_seg" in n.name for n in proto.graph.node):
            raise RuntimeError("export lost the conv_seg node name (the network-only cut relies on it)")
        set_metadata(proto, export_metadata(model, metadata))
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return path
