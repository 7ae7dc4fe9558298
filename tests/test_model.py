"""The model definition equals the official TopFormer: layout, weights loading and outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engine.models.checkpoint import detect_variant, read_state_dict  # noqa: E402
from engine.errors import CheckpointError  # noqa: E402
from engine.models.topformer import VARIANTS, create_model  # noqa: E402

pytestmark = pytest.mark.torch
REF_VARIANTS = ["tiny", "small", "base", "base-cityscapes"]


@pytest.mark.shared
@pytest.mark.parametrize("variant", REF_VARIANTS)
def test_state_dict_layout_matches_official(shared_dir, variant):
    ref = json.loads((shared_dir / "reference" / "state_dict_keys.json").read_text())[variant]
    num_classes = 19 if variant == "base-cityscapes" else 150
    model = create_model(variant, num_classes)
    mine = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert mine == [[k, s] for k, s, _ in ref["keys"]]
    params = sum(p.numel() for p in model.parameters())
    assert params == ref["num_params"]


@pytest.mark.shared
@pytest.mark.parametrize("variant", REF_VARIANTS)
def test_reproduces_reference_logits(shared_dir, variant):
    vectors = np.load(shared_dir / "reference" / "vectors.npz")
    state = read_state_dict(shared_dir / "reference" / f"random-{variant}.pth")
    detected, num_classes = detect_variant(state)
    assert detected == variant
    model = create_model(variant, num_classes).eval()
    model.load_state_dict(state, strict=True)
    for size in ("256x256", "224x288"):  # 224x288: 7x9 at 1/32, pooled to 4x5
        with torch.no_grad():
            out = model(torch.from_numpy(vectors[size])).numpy()
        expected = vectors[f"{variant}/{size}"]
        assert out.shape == expected.shape
        assert np.abs(out - expected).max() < 1e-4


def test_variants_are_data_and_unknown_names_fail():
    assert set(VARIANTS) == {"tiny", "small", "base", "base-cityscapes"}
    with pytest.raises(ValueError, match="unknown TopFormer variant"):
        create_model("huge", 10)
    for variant in ("tiny", "small", "base"):
        logits = create_model(variant, 11).eval()(torch.zeros(1, 3, 96, 160))
        assert logits.shape == (1, 11, 12, 20)


def test_detect_variant_rejects_other_layouts():
    state = create_model("tiny", 11).state_dict()
    assert detect_variant(state) == ("tiny", 11)
    state.pop("backbone.tpm.layer9.conv.4.c.weight")
    with pytest.raises(CheckpointError, match="unknown layout"):
        detect_variant(state)
    with pytest.raises(CheckpointError, match="not a TopFormer"):
        detect_variant({"fc.weight": torch.zeros(2, 2)})
