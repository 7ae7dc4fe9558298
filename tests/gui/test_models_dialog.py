"""Models dialog: the installed list, speed measured here, import with progress, remove, offline download."""
from __future__ import annotations

import dataclasses
import shutil
import socket

import pytest

from app.dialogs import model_tasks
from app.dialogs.models_dialog import ModelsDialog
from app.settings_store import SettingsStore
from engine.paths import MODELS_DIR
from engine.models.registry import Registry

pytestmark = [pytest.mark.gui]


@pytest.fixture
def shipped_copy(tmp_path):
    """A writable copy of the shipped models (camvid-tiny only: quick to measure)."""
    out = tmp_path / "models"
    out.mkdir()
    registry = Registry(MODELS_DIR)
    tiny = registry.get("camvid-tiny")
    Registry(out).add(tiny, registry.verify(tiny))
    return out


def make_dialog(qtbot, models_dir, measure=False, **kw) -> ModelsDialog:
    dialog = ModelsDialog(None, models_dir, SettingsStore(), measure=measure, **kw)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def closed_port_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/download?id="


def test_installed_models_show_full_accuracy_and_speed_measured_here(qtbot, shipped_copy):
    dialog = make_dialog(qtbot, shipped_copy, measure=True)
    assert [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())] == ["camvid-tiny"]
    row = [dialog.table.item(0, c).text() for c in range(dialog.table.columnCount())]
    assert row[1] == "camvid" and row[2] == "11"
    tiny = Registry(shipped_copy).get("camvid-tiny")
    acc = tiny.accuracy
    expected = (f"val mIoU {acc['miou'] * 100:.1f} %, pixel accuracy {acc['pixel_acc'] * 100:.1f} % (101 images); "
                f"unseen drives 0006R0, 0001TP, 0016E5: mean mIoU {100 * tiny.unseen_drive_miou[0]:.1f} (estimate)")
    assert row[3] == expected and len(expected) > 45  # the full text, not clipped
    assert row[4].endswith(" MB")
    qtbot.waitUntil(lambda: "ms/frame" in dialog.speed_cell("camvid-tiny"), timeout=60000)
    ms = dialog.settings.speed_ms(Registry(shipped_copy).get("camvid-tiny").sha256)
    assert ms is not None and 1 < ms < 10000
    dialog.close()
    again = make_dialog(qtbot, shipped_copy, measure=True)  # cached: shown at once, nothing measured
    assert "ms/frame" in again.speed_cell("camvid-tiny") and not again.runner.busy()
    again.select("camvid-tiny")
    assert again.use_button.isEnabled() and not again.remove_button.isEnabled()  # bundled: not removable


def test_measure_again_replaces_a_cached_figure_and_a_broken_model_leaves_the_others_measured(qtbot, shipped_copy):
    """A figure cached from a busy moment is not kept forever; one model that cannot load
    (its file gone) is named, and the others are still measured in the same rounds."""
    registry = Registry(shipped_copy)
    tiny = registry.get("camvid-tiny")
    shipped = Registry(MODELS_DIR)
    int8 = shipped.get("camvid-tiny-int8")  # another file: its own cached figure
    broken = registry.add(dataclasses.replace(int8, name="gone"), shipped.verify(int8))
    registry.onnx_path(broken).unlink()
    dialog = make_dialog(qtbot, shipped_copy)
    dialog.settings.set_speed_ms(tiny.sha256, 99999.0)  # as if measured while the machine was busy
    dialog.refresh(measure=False)
    assert dialog.speed_cell("camvid-tiny") == "99999 ms/frame (640x360)"
    dialog.measure_button.click()
    assert dialog.speed_cell("camvid-tiny") == "measuring…" and not dialog.measure_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.measure_button.isEnabled(), timeout=60000)
    ms = dialog.settings.speed_ms(tiny.sha256)
    assert 1 < ms < 10000 and dialog.speed_cell("camvid-tiny") == f"{ms:.0f} ms/frame (640x360)"
    assert dialog.speed_cell("gone") == "not measured"
    assert dialog.installed_status.text().startswith("Could not measure the speed: ")
    assert "gone" in dialog.installed_status.text()


def test_speeds_are_measured_round_by_round_over_all_models(shipped_copy):
    registry = Registry(shipped_copy)
    tiny = registry.get("camvid-tiny")
    registry.add(dataclasses.replace(tiny, name="tiny-copy"), registry.onnx_path(tiny))
    ms, problems = model_tasks.measure_speeds(shipped_copy, ["camvid-tiny", "tiny-copy", "no-such"], rounds=3)
    assert set(ms) == {"camvid-tiny", "tiny-copy"} and all(0 < v < 10000 for v in ms.values())
    assert set(problems) == {"no-such"} and "no-such" in problems["no-such"]


def test_import_without_torch_names_the_install_command(qtbot, shipped_copy, tmp_path, monkeypatch):
    monkeypatch.setattr(model_tasks, "torch_available", lambda: False)
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"PK\x03\x04 not really")
    dialog = make_dialog(qtbot, shipped_copy)
    assert dialog.import_checkpoint(str(checkpoint), "ade20k") is None
    assert "pip install -e '.[train]'" in dialog.import_status.text()
    assert dialog.download("tiny") is None and "pip install -e '.[train]'" in dialog.download_status.text()


@pytest.mark.torch
def test_offline_download_says_so_plainly_and_saves_nothing(qtbot, shipped_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_DOWNLOAD_URL", closed_port_url())
    cache = tmp_path / "cache"
    dialog = make_dialog(qtbot, shipped_copy, cache_dir=cache)
    job = dialog.download("tiny")
    assert job is not None and dialog.cancel_button.isEnabled() and dialog.download_progress.isVisible()
    qtbot.waitUntil(lambda: not dialog.runner.busy(), timeout=60000)
    qtbot.waitUntil(lambda: dialog.download_button.isEnabled(), timeout=5000)
    assert dialog.download_status.text() == model_tasks.OFFLINE
    assert not cache.exists() or list(cache.iterdir()) == []
    assert Registry(shipped_copy).names() == ["camvid-tiny"]


@pytest.mark.shared
@pytest.mark.torch
def test_import_a_checkpoint_then_remove_it(qtbot, shipped_copy, shared_dir):
    dialog = make_dialog(qtbot, shipped_copy)
    changed = []
    dialog.models_changed.connect(changed.append)
    assert dialog.dataset_combo.currentData() is None  # by default found from the checkpoint's 150 classes
    job = dialog.import_checkpoint(str(shared_dir / "reference" / "topformer-tiny-ade20k.pth"),
                                   dialog.dataset_combo.currentData(), "my-ade")
    assert job is not None and dialog.import_progress.isVisible() and not dialog.import_button.isEnabled()
    qtbot.waitUntil(lambda: changed == ["my-ade"], timeout=120000)
    assert "Installed my-ade: 150 classes" in dialog.import_status.text()
    assert not dialog.import_progress.isVisible()
    entry = Registry(shipped_copy).get("my-ade")
    assert entry.dataset == "ade20k" and model_tasks.is_user_added(entry)
    dialog.select("my-ade")
    assert dialog.remove_button.isEnabled()
    dialog.remove_button.click()
    assert changed == ["my-ade", "my-ade"] and Registry(shipped_copy).names() == ["camvid-tiny"]
    assert not (shipped_copy / "my-ade.onnx").exists()
    with pytest.raises(Exception, match="came with the app"):
        model_tasks.remove_model(shipped_copy, "camvid-tiny")


def test_window_opens_the_dialog_from_the_menu_and_the_picker_link(qtbot, make_window, shipped_copy):
    window = make_window(shipped_copy, model="camvid-tiny")
    qtbot.waitUntil(lambda: window.serving is not None, timeout=20000)
    action = next(a for a in window.menus.models_menu.actions() if a.text() == "Download…")
    action.trigger()
    dialog = window.models_dialog
    assert dialog is not None and dialog.isVisible() and dialog.tabs.currentIndex() == 1
    dialog.close()
    qtbot.waitUntil(lambda: window.models_dialog is None, timeout=5000)
    window.model_panel.manage_link.linkActivated.emit("manage")
    assert window.models_dialog is not None and window.models_dialog.tabs.currentIndex() == 0
    window.models_dialog.close()


class SlowRangeServer:
    """A local HTTP server for one file, in small slow chunks, honouring Range (like the real one)."""

    def __init__(self, path, chunk: int = 64 * 1024, delay_s: float = 0.08):
        import http.server
        import threading

        data = path.read_bytes()
        self.ranges: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # noqa: D102 - quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server name
                start = 0
                header = self.headers.get("Range")
                server.ranges.append(header or "")
                if header:
                    start = int(header.split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                try:
                    for i in range(start, len(data), chunk):
                        self.wfile.write(data[i:i + chunk])
                        time.sleep(delay_s)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        import time

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/file?id="
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="test-http", daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.shared
@pytest.mark.torch
def test_download_shows_progress_cancels_and_resumes(qtbot, shipped_copy, shared_dir, tmp_path, monkeypatch):
    server = SlowRangeServer(shared_dir / "reference" / "topformer-tiny-ade20k.pth")
    monkeypatch.setenv("STUDIO_DOWNLOAD_URL", server.url)
    cache = tmp_path / "cache"
    try:
        dialog = make_dialog(qtbot, shipped_copy, cache_dir=cache)
        dialog.download("tiny")
        qtbot.waitUntil(lambda: dialog.download_progress.maximum() == 1000 and dialog.download_progress.value() > 100,
                        timeout=30000)
        assert " MB" in dialog.download_progress.format()
        dialog.cancel_button.click()
        qtbot.waitUntil(lambda: dialog.download_button.isEnabled(), timeout=30000)
        assert "cancelled" in dialog.download_status.text().lower()
        parts = list(cache.glob("*.part"))
        assert len(parts) == 1 and parts[0].stat().st_size > 0
        changed = []
        dialog.models_changed.connect(changed.append)
        dialog.download("tiny")  # resumes where it stopped
        qtbot.waitUntil(lambda: changed == ["ade20k-tiny"], timeout=180000)
        assert server.ranges[0] == "" and server.ranges[-1].startswith("bytes=") and server.ranges[-1] != "bytes=0-"
        assert Registry(shipped_copy).get("ade20k-tiny").num_classes == 150
    finally:
        server.close()
