"""The "Annotate video…" dialog: a short job runs to completion in the background; Cancel stops one."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("PySide6")

from PySide6.QtGui import QDesktopServices  # noqa: E402

from engine.jobs import annotate as ann  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.shared]


def make_dialog(qtbot, models_dir, video, out):
    from app.dialogs.annotate_dialog import AnnotateDialog

    dialog = AnnotateDialog(None, models_dir, video_path=video, model_name="camvid-tiny")
    qtbot.addWidget(dialog)
    dialog.out_edit.setText(str(out))
    dialog.scale_combo.setCurrentIndex(dialog.scale_combo.findData("half"))
    return dialog


def test_dialog_runs_job_to_completion_and_opens_folder(qtbot, shipped_models_dir, videos, tmp_path, monkeypatch):
    video = videos / "highway-1280x720-short.mp4"
    out = tmp_path / "job"
    dialog = make_dialog(qtbot, shipped_models_dir, video, out)
    assert dialog.model_combo.currentData() == "camvid-tiny"
    dialog.every_spin.setValue(5)  # frames 0, 5, ..., 35: 8 frames
    dialog.format_checks["cvat"].setChecked(False)
    with qtbot.waitSignal(dialog.job_finished, timeout=120_000) as finished:
        qtbot.mouseClick(dialog.start_button, qtbot_button())
        assert dialog.state == "running" and not dialog.start_button.isEnabled()
    assert finished.args == ["done"], dialog.status_label.text()
    assert dialog.progress_bar.value() == dialog.progress_bar.maximum() == 8
    assert dialog.result.frames == 8 and "frames/s" in dialog.status_label.text()
    assert len(list((out / "masks").glob("frame_*.png"))) == 8
    assert (out / "overlay.mp4").is_file() and not (out / "cvat.zip").exists()
    assert json.loads((out / "summary.json").read_text())["formats"] == ["masks", "overlay", "stats"]

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: opened.append(url) or True))
    assert dialog.open_button.isEnabled()
    qtbot.mouseClick(dialog.open_button, qtbot_button())
    assert [u.toLocalFile() for u in opened] == [str(out.resolve())]


def test_cancel_stops_the_job(qtbot, shipped_models_dir, videos, tmp_path):
    video = videos / "dashcam-highway-960x540.mp4"  # 221 frames: far longer than the wait below
    out = tmp_path / "job"
    dialog = make_dialog(qtbot, shipped_models_dir, video, out)
    dialog.start()
    qtbot.waitUntil(lambda: dialog.progress_bar.value() >= 2, timeout=120_000)
    with qtbot.waitSignal(dialog.job_finished, timeout=60_000) as finished:
        qtbot.mouseClick(dialog.cancel_button, qtbot_button())
    assert finished.args == ["cancelled"]
    assert dialog.worker is None and dialog.start_button.isEnabled()
    assert dialog.resume_check.isChecked()  # offered: Start now continues the job
    kept = list((out / "masks").glob("frame_*.png"))
    assert 2 <= len(kept) < 221
    assert not (out / "overlay.mp4").exists() and not (out / "summary.json").exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(ann.TMP_PREFIX)]


def test_bad_video_shows_error(qtbot, shipped_models_dir, tmp_path):
    dialog = make_dialog(qtbot, shipped_models_dir, tmp_path / "missing.mp4", tmp_path / "out")
    with qtbot.waitSignal(dialog.job_finished, timeout=60_000) as finished:
        dialog.start()
    assert finished.args == ["failed"]
    assert "does not exist" in dialog.error and "does not exist" in dialog.status_label.text()
    assert not (tmp_path / "out").exists() and dialog.start_button.isEnabled()


def qtbot_button():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_best_size_choice_runs_at_the_models_best_input(qtbot, shipped_models_dir, videos, tmp_path):
    video = videos / "indoor-people-768x432.mp4"  # smaller than camvid-tiny's best size (long side 960)
    out = tmp_path / "job"
    dialog = make_dialog(qtbot, shipped_models_dir, video, out)
    dialog.scale_combo.setCurrentIndex(dialog.scale_combo.findData("best"))
    dialog.end_edit.setText("0.3")  # frames 0, 1, 2
    for name in ("overlay", "cvat", "stats"):
        dialog.format_checks[name].setChecked(False)
    assert dialog.options().scale == "best"
    with qtbot.waitSignal(dialog.job_finished, timeout=120_000) as finished:
        dialog.start()
    assert finished.args == ["done"], dialog.status_label.text()
    settings = json.loads((out / "summary.json").read_text())["settings"]
    assert settings["scale"] == "best" and settings["input_size"] == [544, 960]  # 1.25x, up from 768x432
