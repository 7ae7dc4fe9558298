"""Trainable weights from a shipped ONNX file, so training can go on from any installed model.

Run folders (checkpoints) stay on the machine that trained them; the ONNX files in ``models/``
travel with the project. The exporter folds every BatchNorm into the conv before it, so each
conv + BatchNorm pair comes back as the folded conv followed by a BatchNorm that only adds the
folded bias (weight 1, mean 0, variance 1 - eps). In eval mode, and in training with
``--freeze-bn`` (running statistics kept), the rebuilt network computes what the file computes;
``onnx_state`` checks that on a test image before it returns.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import StudioError
from ..models.topformer import VARIANTS, create_model

CHECK_HW = (96, 128)  # the test image: small, a multiple of 32


def conv_order(model: nn.Module, hw: tuple[int, int] = CHECK_HW) -> list[tuple[str, str | None]]:
    """(conv name, name of the BatchNorm that takes the conv's output, or None), in the order
    the forward pass runs them: the order of the Conv nodes in an exported graph."""
    names = {module: name for name, module in model.named_modules()}
    order: list[list] = []
    outputs: list[torch.Tensor] = []  # kept alive, so each ``is`` below compares live tensors

    def after_conv(module, _inputs, output):
        order.append([names[module], None])
        outputs.append(output)

    def before_bn(module, inputs):
        for i, out in enumerate(outputs):
            if inputs[0] is out:
                order[i][1] = names[module]

    hooks = [m.register_forward_hook(after_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_pre_hook(before_bn) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *hw))
    finally:
        for hook in hooks:
            hook.remove()
    return [(conv, bn) for conv, bn in order]


def _read(path: Path):
    import onnx
    from onnx import numpy_helper

    from ..models.graph import decode_metadata

    if not path.is_file():
        raise StudioError(f"--init: no model file {path}")
    try:
        proto = onnx.load(str(path))
    except Exception:  # noqa: BLE001 - any parse failure is the same one-line error
        raise StudioError(f"--init: {path} is not a readable ONNX file") from None
    meta = decode_metadata({p.key: p.value for p in proto.metadata_props})
    if meta.get("variant") not in VARIANTS or not isinstance(meta.get("num_classes"), int):
        raise StudioError(f"--init: {path} is not a TopFormer exported by this project (no variant in its metadata)")
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    if not convs or any(n.op_type in ("QLinearConv", "ConvInteger", "DequantizeLinear") for n in proto.graph.node):
        raise StudioError(f"--init: {path} holds no float convolutions (an INT8 copy?): start from the FP32 model")
    return meta, weights, convs


def onnx_state(path: str | Path) -> tuple[dict, str, int]:
    """(state_dict, variant, num_classes) rebuilt from an ONNX file this project exported."""
    path = Path(path)
    meta, weights, convs = _read(path)
    variant, num_classes = meta["variant"], meta["num_classes"]
    model = create_model(variant, num_classes)
    order = conv_order(model)
    if len(order) != len(convs):
        raise StudioError(f"--init: {path} has {len(convs)} convolutions, a TopFormer-{variant} {len(order)}")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for (conv, bn), node in zip(order, convs):
        weight = weights.get(node.input[1])
        bias = weights.get(node.input[2]) if len(node.input) > 2 else None
        if weight is None or tuple(weight.shape) != tuple(state[f"{conv}.weight"].shape):
            raise StudioError(f"--init: {path} does not match a TopFormer-{variant} at {conv}")
        state[f"{conv}.weight"] = torch.from_numpy(weight.copy())
        if bn is None and bias is not None and f"{conv}.bias" not in state:
            raise StudioError(f"--init: {path} has a bias at {conv}, where the network has none")
        bias = np.zeros(weight.shape[0], np.float32) if bias is None else bias
        if f"{conv}.bias" in state:  # with a BatchNorm after it, the folded bias goes there instead
            state[f"{conv}.bias"] = torch.from_numpy(bias.copy()) if bn is None else torch.zeros(weight.shape[0])
        if bn is None:
            continue
        eps = model.get_submodule(bn).eps
        state[f"{bn}.weight"] = torch.ones(weight.shape[0])
        state[f"{bn}.bias"] = torch.from_numpy(bias.copy())
        state[f"{bn}.running_mean"] = torch.zeros(weight.shape[0])
        state[f"{bn}.running_var"] = torch.full((weight.shape[0],), 1.0 - eps)
    _check_same_logits(path, model, state, (meta.get("exposure") or {}).get("target_mean"))
    return state, variant, num_classes


def _check_same_logits(path: Path, model: nn.Module, state: dict, exposure_target: float | None = None) -> None:
    """The rebuilt network must give the file's logits: a layout this code misreads fails here."""
    import onnxruntime as ort

    from ..models.export import DeployGraph

    model.load_state_dict(state, strict=True)
    image = np.random.default_rng(0).integers(0, 256, (1, *CHECK_HW, 3), dtype=np.uint8)
    with torch.no_grad():
        ours = DeployGraph(model.eval(), exposure_target)(torch.from_numpy(image)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: image})[0]
    if ours.shape != theirs.shape or not np.allclose(ours, theirs, atol=1e-3 * max(1.0, float(np.abs(theirs).max()))):
        raise StudioError(f"--init: the weights read back from {path} do not reproduce its output")
