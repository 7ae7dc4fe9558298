"""Distillation: the KL loss, unlabelled frames from real files, and training with a real
installed teacher (the shipped camvid-tiny, run by ONNX Runtime)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.cli import run_command
from engine.errors import StudioError
from engine.models.exposure import brighten
from engine.models.registry import Registry
from engine.training.distill import load_unlabelled
from fake_camvid import fake_camvid


def _video(path: Path, frames: int = 10, size: tuple[int, int] = (128, 72)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_unlabelled_frames_from_a_real_video_and_an_image_folder(tmp_path):
    video = _video(tmp_path / "clip.mp4", frames=10)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.zeros((50, 100, 3), np.uint8))
    frames = load_unlabelled([str(video), str(folder)], every=3, height=36)
    # Frames 0, 3, 6, 9 of the video, images 0 of 3 ([::3]); all resized to 36 rows, aspect kept.
    assert len(frames) == 4 + 1
    assert [f.shape for f in frames[:4]] == [(36, 64, 3)] * 4 and frames[4].shape == (36, 72, 3)
    assert frames[1].mean() > frames[0].mean()  # real, different frames (grey levels 0, 60, ...)
    for bad in ([str(tmp_path / "missing.mp4")], [str(tmp_path)]):
        with pytest.raises(StudioError):
            load_unlabelled(bad, every=1, height=36)


@pytest.mark.torch
def test_distill_loss_is_zero_at_the_teacher_and_pulls_the_student_towards_it():
    torch = pytest.importorskip("torch")
    from engine.training.distill import distill_loss, supervised_loss

    teacher = torch.randn(2, 11, 6, 8)
    assert float(distill_loss(teacher.clone(), teacher, 1.0)) == pytest.approx(0.0, abs=1e-6)
    student = torch.zeros(2, 11, 6, 8, requires_grad=True)
    loss = distill_loss(student, teacher, 2.0)
    assert float(loss.detach()) > 0
    loss.backward()
    with torch.no_grad():  # one gradient step lowers the KL: the student moves towards the teacher
        after = distill_loss(student - 10.0 * student.grad, teacher, 2.0)
    assert float(after) < float(loss.detach())
    # A teacher at another resolution is resized to the student's grid.
    assert distill_loss(torch.zeros(1, 11, 6, 8), torch.zeros(1, 11, 12, 16), 1.0).shape == ()
    # A batch of unlabelled frames only: no labelled loss, not NaN.
    ce = torch.nn.CrossEntropyLoss(ignore_index=11)
    logits = torch.randn(2, 11, 6, 8)
    assert float(supervised_loss(ce, logits, torch.full((2, 6, 8), 11), 11)) == 0.0
    assert float(supervised_loss(ce, logits, torch.zeros(2, 6, 8, dtype=torch.long), 11)) > 0


def _args(data: Path, out: Path, models: Path, *extra: str) -> list[str]:
    return ["train", "--variant", "tiny", "--data", str(data), "--out", str(out), "--epochs", "2", "--batch", "2",
            "--crop", "64x96", "--threads", "1", "--warmup-iters", "1", "--eval-every", "1", "--no-progress",
            "--models-dir", str(models), *extra]


def test_teacher_of_a_run_that_brightens_its_frames_does_not_brighten_them_again(shipped_models_dir):
    """camvid-tiny's graph brightens dark frames; a run with --exposure-target has done so
    already, so the teacher runs without its gain: the same logits on a bright crop, its
    plain network's on a dark one (not the twice-brightened crop's)."""
    pytest.importorskip("onnx")
    pytest.importorskip("torch")
    from engine.training.distill import Teacher

    own = Teacher("camvid-tiny", shipped_models_dir, threads=1, num_classes=11)
    told = Teacher("camvid-tiny", shipped_models_dir, threads=1, num_classes=11, frames_brightened=True)
    assert own.segmenter.metadata["exposure"] and own.session is None and "exposure" in told.record
    rng = np.random.default_rng(1)
    bright = rng.integers(90, 256, (64, 96, 3), dtype=np.uint8)
    dark = (bright // 3).astype(np.uint8)
    assert np.array_equal(own.logits([bright]).numpy(), told.logits([bright]).numpy())
    assert not np.allclose(own.logits([dark]).numpy(), told.logits([dark]).numpy(), atol=1e-3)
    lifted = brighten(dark, own.segmenter.metadata["exposure"]["target_mean"])  # what its own gain shows it
    assert np.abs(own.logits([dark]).numpy() - told.logits([lifted]).numpy()).max() < 1e-3


@pytest.mark.torch
def test_training_with_a_real_teacher_and_unlabelled_frames(tmp_path, shipped_models_dir, capsys):
    """The shipped camvid-tiny teaches; the run records which file taught it and how many
    unlabelled frames it saw; the teacher changes the weights; --resume continues exactly."""
    torch = pytest.importorskip("torch")
    from engine.training.trainer import TrainConfig, train

    data = fake_camvid(tmp_path / "ds")
    video = _video(tmp_path / "clip.mp4", frames=8)
    kd = tmp_path / "kd"
    assert run_command(_args(data, kd, shipped_models_dir, "--teacher", "camvid-tiny", "--unlabelled", str(video),
                             "--unlabelled-every", "2", "--distill-weight", "2")) == 0
    cfg = json.loads((kd / "config.json").read_text())
    sha = Registry(shipped_models_dir).get("camvid-tiny").sha256
    assert cfg["extra"]["teacher"] == {"name": "camvid-tiny", "sha256": sha, "variant": "tiny"}
    assert cfg["extra"]["unlabelled_frames"] == 4 and cfg["distill_weight"] == 2.0
    assert cfg["teacher_models_dir"] == str(shipped_models_dir)
    log = [json.loads(line) for line in (kd / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)

    plain = tmp_path / "plain"  # same run without the teacher's term: other weights
    assert run_command(_args(data, plain, shipped_models_dir, "--unlabelled-every", "2")) == 0
    a = torch.load(kd / "last.pth", weights_only=False)["model"]
    b = torch.load(plain / "last.pth", weights_only=False)["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].dtype.is_floating_point)

    split = tmp_path / "split"  # interrupted after one epoch, resumed: the same weights
    saved = {**cfg, "out": str(split), "extra": {}}
    train(TrainConfig.from_saved(saved), stop_after_epochs=1)
    assert run_command(["train", "--out", str(split), "--resume", "--threads", "1", "--no-progress"]) == 0
    c = torch.load(split / "last.pth", weights_only=False)["model"]
    assert all(torch.equal(a[k], c[k]) for k in a)

    # Shipped, the manifest says which file taught it, with what weight, on how many unlabelled frames.
    models = tmp_path / "m"
    assert run_command(["train", "--export-only", str(kd), "--checkpoint", "last.pth", "--name", "kd-tiny",
                        "--models-dir", str(models), "--data", str(data)]) == 0
    training = Registry(models).get("kd-tiny").training
    assert training["teacher"]["sha256"] == sha and training["unlabelled_frames"] == 4
    assert training["recipe"]["teacher"] == "camvid-tiny" and training["recipe"]["distill_weight"] == 2.0
    assert "distilled from camvid-tiny" in Registry(models).get("kd-tiny").notes
    capsys.readouterr()


@pytest.mark.torch
def test_distillation_user_errors_are_one_line_and_leave_no_run(tmp_path, shipped_models_dir, capsys):
    pytest.importorskip("torch")
    data = fake_camvid(tmp_path / "ds", n=2)
    video = _video(tmp_path / "clip.mp4", frames=2)
    cases = [
        (["--unlabelled", str(video)], "need a --teacher or --lwf-weight"),
        (["--teacher", "no-such-model"], "no-such-model"),
        (["--teacher", "camvid-tiny", "--distill-temp", "0"], "--distill-temp"),
        (["--teacher", "camvid-tiny", "--unlabelled", str(tmp_path / "gone.mp4")], "not found"),
    ]
    for i, (extra, words) in enumerate(cases):
        out = tmp_path / f"r{i}"
        assert run_command(_args(data, out, shipped_models_dir, *extra)) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
        assert not out.exists()
