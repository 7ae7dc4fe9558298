"""Export a TopFormer to ONNX with the fixed pre- and post-processing inside the graph.

Graph: ``image`` uint8 [1,H,W,3] BGR (H, W multiples of 32) and ``out_size`` int64 [2]
-> ``labels`` uint8 [1,out_h,out_w]. Inside: BGR->RGB, mean/std normalisation, the
network, then the class map at ``out_size`` with official semantics (bilinear upsample
of the logits, align_corners=False, argmax).

The upsample is the expensive part (C planes at full resolution). If the four
low-resolution neighbours of an output pixel share the same argmax class, that class
is also the argmax of any convex blend of them, so the blend is computed only for the
pixels whose neighbours disagree (class boundaries, a few % of the image). The result
is the same as the full upsample up to exact ties.
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .topformer import MEAN_RGB, STD_RGB, TopFormer

OPSET = 17
INPUT_MULTIPLE = 32


def _source_index(out_len: torch.Tensor, in_len: torch.Tensor):
    """Per output position: (low index, high index, weight of high) of a bilinear
    resize with align_corners=False, exactly as torch/ONNX Resize compute them."""
    scale = in_len.to(torch.float32) / out_len.to(torch.float32)
    pos = (torch.arange(out_len, dtype=torch.float32) + 0.5) * scale - 0.5
    pos = torch.clamp(pos, min=0.0)
    low = torch.floor(pos)
    weight = pos - low
    low = low.to(torch.int64)
    high = torch.minimum(low + 1, in_len.to(torch.int64) - 1)
    return low, high, weight


class _CellLookup(torch.autograd.Function):
    """Nearest resize that picks, for each output pixel, its top-left bilinear neighbour.

    That is ONNX ``Resize`` with half_pixel coordinates and floor rounding, an optimised
    kernel in ONNX Runtime; PyTorch cannot express it through ``F.interpolate``, so the
    graph node is written here and eager mode gathers the same indices.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, out_size: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        ys = _source_index(out_size[0], torch.as_tensor(x.shape[2]))[0]
        xs = _source_index(out_size[1], torch.as_tensor(x.shape[3]))[0]
        return x.index_select(2, ys).index_select(3, xs)

    @staticmethod
    def symbolic(g, x, out_size):
        lead = g.op("Constant", value_t=torch.tensor([1, 2], dtype=torch.int64))
        sizes = g.op("Concat", lead, out_size, axis_i=0)
        empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
        return g.op("Resize", x, empty, empty, sizes, mode_s="nearest",
                    coordinate_transformation_mode_s="half_pixel", nearest_mode_s="floor")


def labels_from_logits(logits: torch.Tensor, out_size: torch.Tensor) -> torch.Tensor:
    """argmax(bilinear_upsample(logits)) for batch 1, blending logits only at class boundaries.

    A coarse cell (a pixel and its right, lower and lower-right neighbours, edges
    replicated) is *uniform* when its four argmax classes agree; then every output pixel
    whose bilinear neighbours are that cell has that class. A nearest lookup carries the
    cell classes and flags to full size; only the other pixels are blended exactly,
    gathering [K, C] rows of logits. Returns uint8 [out_h, out_w].
    """
    out_h, out_w = out_size[0], out_size[1]
    c, h, w = logits.shape[1], logits.shape[2], logits.shape[3]
    h_t = torch.as_tensor(h) if not isinstance(h, torch.Tensor) else h
    w_t = torch.as_tensor(w) if not isinstance(w, torch.Tensor) else w
    coarse = logits[0].argmax(0).to(torch.float32)[None, None]  # class ids are exact in float32
    padded = F.pad(coarse, (0, 1, 0, 1), mode="replicate")
    uniform = (F.max_pool2d(padded, 2, 1) == -F.max_pool2d(-padded, 2, 1)).to(torch.float32)
    cells = _CellLookup.apply(torch.cat([coarse, uniform], 1), out_size)
    labels = cells[0, 0].reshape(-1)
    idx = torch.nonzero(cells[0, 1].reshape(-1) == 0).reshape(-1)

    y0, y1, wy = _source_index(out_h, h_t)
    x0, x1, wx = _source_index(out_w, w_t)
    out_w64 = out_w.to(torch.int64)
    yy = torch.div(idx, out_w64, rounding_mode="floor")
    xx = idx - yy * out_w64
    ty0, ty1, twy = y0[yy], y1[yy], wy[yy].unsqueeze(1)
    tx0, tx1, twx = x0[xx], x1[xx], wx[xx].unsqueeze(1)
    rows = logits[0].reshape(c, -1).transpose(0, 1)  # [h*w, C]: one contiguous row per pixel
    w64 = w_t.to(torch.int64)

    def gather(yi: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return rows.index_select(0, yi * w64 + xi)

    top = gather(ty0, tx0) * (1.0 - twx) + gather(ty0, tx1) * twx
    bottom = gather(ty1, tx0) * (1.0 - twx) + gather(ty1, tx1) * twx
    blend = top * (1.0 - twy) + bottom * twy
    labels = labels.scatter(0, idx, blend.argmax(1).to(torch.float32))
    return labels.reshape(out_h, out_w).to(torch.uint8)


class DeployGraph(nn.Module):
    """uint8 BGR frame + output size -> uint8 class map (what the ONNX file computes)."""

    def __init__(self, model: TopFormer):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(MEAN_RGB).reshape(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(STD_RGB).reshape(1, 3, 1, 1))
        self.register_buffer("bgr_to_rgb", torch.tensor([2, 1, 0]))

    def forward(self, image: torch.Tensor, out_size: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).index_select(1, self.bgr_to_rgb).to(torch.float32)
        logits = self.model((x - self.mean) * self.inv_std)
        return labels_from_logits(logits, out_size).unsqueeze(0)


def export_onnx(model: TopFormer, path: Path, metadata: dict | None = None, sample_hw: tuple[int, int] = (256, 320)) -> Path:
    """Write ``model`` (eval mode, BN folded by ORT) as a dynamic-size ONNX file at ``path``.

    The file is written to a temporary name first and renamed, so ``path`` is never half-written.
    ``metadata`` is stored as JSON strings in the model's metadata_props.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = DeployGraph(model.eval()).eval()
    image = torch.randint(0, 256, (1, sample_hw[0], sample_hw[1], 3), dtype=torch.uint8)
    out_size = torch.tensor([sample_hw[0] + 10, sample_hw[1] - 10], dtype=torch.int64)
    fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (image, out_size),
                tmp,
                input_names=["image", "out_size"],
                output_names=["labels"],
                dynamic_axes={"image": {1: "height", 2: "width"}, "labels": {1: "out_height", 2: "out_width"}},
                opset_version=OPSET,
                dynamo=False,
            )
        proto = onnx.load(tmp)
        meta = {"input_multiple": INPUT_MULTIPLE, "variant": model.variant, "num_classes": model.num_classes}
        meta.update(metadata or {})
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, json.dumps(value)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
