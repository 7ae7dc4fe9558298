""""Annotate video…" dialog: choose a video, a model and what to write; the job runs in the background.

The job (engine.jobs.annotate.AnnotateJob) runs through app/dialogs/jobs.py like every dialog job; its
progress callback arrives through a queued signal. Cancel stops it between frames (finished frames are kept, so "Resume" continues
later); at the end "Open folder" shows the results in the file manager.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QCoreApplication, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout,
                               QWidget)

from engine.jobs import annotate as ann
from engine.errors import StudioError
from engine.models.registry import Registry

from .jobs import Job, JobRunner

# Annotate jobs run on one app-wide runner (app/dialogs/jobs.py), not on the dialog: a dialog that is
# deleted mid-run (its parent window destroyed) must not wait for, or take down, a running job.
# At quit every job is cancelled and waited for.
_RUNNER: JobRunner | None = None


def _runner() -> JobRunner:
    global _RUNNER
    if _RUNNER is None:
        _RUNNER = JobRunner(None)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(lambda: _RUNNER.shutdown(60000))
    return _RUNNER


def _annotate(options: ann.AnnotateOptions, job: Job) -> ann.AnnotateResult:
    """The job function: checks and model loading (reported as "prepared"), then the frames."""
    prepared = ann.AnnotateJob(options).prepare()
    job.update(("prepared", prepared))
    if job.cancelled:
        raise ann.AnnotateCancelled("cancelled")
    return prepared.run(progress=job.update, cancel=job.cancel_event)


VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v *.mpg *.mpeg *.wmv);;All files (*)"


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class AnnotateDialog(QDialog):
    """Options like ``main.py annotate``; Start runs the job in the background with a progress bar."""

    job_finished = Signal(str)  # final state: "done", "failed" or "cancelled"
    out_root_chosen = Signal(str)  # the folder holding this job's output folder: remembered for next time

    def __init__(self, parent: QWidget | None = None, models_dir: Path | str | None = None,
                 video_path: Path | str | None = None, model_name: str | None = None,
                 out_root: Path | str | None = None):
        super().__init__(parent)
        # Results go under out_root (the user's Videos folder by default, then where they last chose),
        # never next to the source video unless the user picks that folder.
        self.out_root = Path(out_root) if out_root else None
        self.setWindowTitle("Annotate video")
        self.models_dir = models_dir
        self.worker: Job | None = None
        self.result: ann.AnnotateResult | None = None
        self.error: str | None = None
        self.state = "idle"  # idle, running, done, failed, cancelled
        self._out_was_auto = True
        self._closed = False

        form = QFormLayout()
        self.video_edit = QLineEdit()
        self.video_edit.setPlaceholderText("video file")
        browse_video = QPushButton("Browse…")
        browse_video.clicked.connect(self._browse_video)
        form.addRow("Video", self._row(self.video_edit, browse_video))

        self.model_combo = QComboBox()
        try:
            entries = Registry(models_dir).entries()
        except StudioError as exc:
            entries = []
            self.error = str(exc)
        for entry in entries:
            self.model_combo.addItem(entry.describe(), entry.name)
        if model_name:
            i = self.model_combo.findData(model_name)
            if i >= 0:
                self.model_combo.setCurrentIndex(i)
        self.model_combo.currentIndexChanged.connect(self._suggest_out)
        form.addRow("Model", self.model_combo)

        self.scale_combo = QComboBox()
        self.scale_combo.addItem("full resolution", "full")
        self.scale_combo.addItem("half resolution (faster)", "half")
        # the manifest's best_long_side, up or down: on CamVid-size footage about 3 mIoU more on unseen drives
        self.scale_combo.addItem("the model's best input size (best masks; slower on small videos)", "best")
        form.addRow("Network input", self.scale_combo)

        self.every_spin = QSpinBox()
        self.every_spin.setRange(1, 10000)
        self.every_spin.setPrefix("every ")
        self.every_spin.setSuffix(" frame(s)")
        form.addRow("Frames", self.every_spin)

        self.start_edit = QLineEdit()
        self.start_edit.setPlaceholderText("beginning (seconds or mm:ss)")
        self.end_edit = QLineEdit()
        self.end_edit.setPlaceholderText("end (seconds or mm:ss)")
        form.addRow("From", self.start_edit)
        form.addRow("To", self.end_edit)

        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output folder")
        self.out_edit.textEdited.connect(self._out_edited)
        browse_out = QPushButton("Browse…")
        browse_out.clicked.connect(self._browse_out)
        form.addRow("Output folder", self._row(self.out_edit, browse_out))

        self.format_checks: dict[str, QCheckBox] = {}
        labels = {"masks": "masks (PNG)", "overlay": "overlay video", "stats": "statistics (CSV)", "cvat": "CVAT zip"}
        boxes = QWidget()
        box_layout = QHBoxLayout(boxes)
        box_layout.setContentsMargins(0, 0, 0, 0)
        for name in ann.FORMATS:
            check = QCheckBox(labels[name])
            check.setChecked(True)
            self.format_checks[name] = check
            box_layout.addWidget(check)
        form.addRow("Write", boxes)

        self.opacity_spin = QDoubleSpinBox()
        self.opacity_spin.setRange(0.0, 1.0)
        self.opacity_spin.setSingleStep(0.1)
        self.opacity_spin.setValue(0.5)
        form.addRow("Overlay opacity", self.opacity_spin)

        self.resume_check = QCheckBox("Continue where an earlier run in this folder stopped")
        self.overwrite_check = QCheckBox("Replace what an earlier run wrote in this folder")
        self.resume_check.toggled.connect(lambda on: on and self.overwrite_check.setChecked(False))
        self.overwrite_check.toggled.connect(lambda on: on and self.resume_check.setChecked(False))
        form.addRow("", self.resume_check)
        form.addRow("", self.overwrite_check)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label = QLabel(self.error or "")
        self.status_label.setWordWrap(True)
        self.status_label.setMinimumHeight(self.status_label.fontMetrics().lineSpacing() * 3)

        self.buttons = QDialogButtonBox()
        self.start_button = self.buttons.addButton("Start", QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button = self.buttons.addButton("Cancel", QDialogButtonBox.ButtonRole.RejectRole)
        self.open_button = self.buttons.addButton("Open folder", QDialogButtonBox.ButtonRole.ActionRole)
        self.close_button = self.buttons.addButton("Close", QDialogButtonBox.ButtonRole.DestructiveRole)
        self.open_button.setEnabled(False)
        self.cancel_button.setEnabled(False)
        # Buttons are wired one by one: the box's accepted/rejected would close the dialog.
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.open_button.clicked.connect(self.open_folder)
        self.close_button.clicked.connect(self.close)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addWidget(self.buttons)
        self.resize(560, self.sizeHint().height())

        if video_path:
            self.video_edit.setText(str(video_path))
            self._suggest_out()
        self.video_edit.textChanged.connect(self._suggest_out)
        self._inputs = [self.video_edit, browse_video, self.model_combo, self.scale_combo, self.every_spin,
                        self.start_edit, self.end_edit, self.out_edit, browse_out, boxes, self.opacity_spin,
                        self.resume_check, self.overwrite_check]

    @staticmethod
    def _row(*widgets: QWidget) -> QWidget:
        row = QWidget()
        lay = QHBoxLayout(row)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in widgets:
            lay.addWidget(w)
        return row

    # ---- options -------------------------------------------------------------------------------
    def _browse_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Video to annotate", self.video_edit.text(), VIDEO_FILTER)
        if path:
            self.video_edit.setText(path)

    def _browse_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Output folder", self.out_edit.text())
        if path:
            self.out_edit.setText(path)
            self._out_was_auto = False

    def _out_edited(self, _text: str) -> None:
        self._out_was_auto = False

    def _suggest_out(self, *_args) -> None:
        """A folder under the output root named after the video and the model, until the user picks one."""
        video = self.video_edit.text().strip()
        if not video or not self._out_was_auto:
            return
        path = Path(video)
        model = self.model_combo.currentData() or "model"
        root = self.out_root or path.parent
        self.out_edit.setText(str(root / f"{path.stem}-{model}-annotations"))

    def options(self) -> ann.AnnotateOptions:
        """The dialog's settings as engine options (raises StudioError for an empty field)."""
        video = self.video_edit.text().strip()
        out = self.out_edit.text().strip()
        model = self.model_combo.currentData()
        if not video:
            raise StudioError("choose a video file")
        if not model:
            raise StudioError("no model installed: import or download one first")
        if not out:
            raise StudioError("choose an output folder")
        formats = [name for name, check in self.format_checks.items() if check.isChecked()]
        if not formats:
            raise StudioError("choose at least one output")
        return ann.AnnotateOptions(
            video=video, model=model, out=out, models_dir=self.models_dir, scale=self.scale_combo.currentData(),
            every=self.every_spin.value(), start=self.start_edit.text().strip() or None,
            end=self.end_edit.text().strip() or None, formats=tuple(formats), opacity=self.opacity_spin.value(),
            resume=self.resume_check.isChecked(), overwrite=self.overwrite_check.isChecked())

    # ---- running -----------------------------------------------------------------------------
    @Slot()
    def start(self) -> None:
        if self.state == "running":
            return
        try:
            options = self.options()
        except StudioError as exc:
            self._show_error(str(exc))
            return
        self.out_root_chosen.emit(str(Path(options.out).parent))
        self.result = None
        self.error = None
        self.state = "running"
        self._set_inputs_enabled(False)
        self.start_button.setEnabled(False)
        self.open_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, 0)  # busy until the first frame: loading the model, checking the video
        self.status_label.setText("checking the video and loading the model…")
        self.worker = _runner().start("annotate", lambda job: _annotate(options, job), finished=self._on_succeeded,
                                      failed=self._on_job_failed, update=self._on_update)

    @Slot()
    def cancel(self) -> None:
        if self.state == "running" and self.worker is not None:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self.status_label.setText("cancelling…")

    @Slot()
    def open_folder(self) -> None:
        folder = self.result.out_dir if self.result else Path(self.out_edit.text().strip())
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(folder).resolve())))

    @Slot(object)
    def _on_update(self, update) -> None:
        if self._closed:
            return
        if isinstance(update, tuple) and update[0] == "prepared":
            self._on_prepared(update[1])
        else:
            self._on_progress(update)

    @Slot(str)
    def _on_job_failed(self, message: str) -> None:
        if self._closed:
            return
        if self.worker is not None and self.worker.cancelled:
            self._on_cancelled()
        else:
            self._on_failed(message)

    def _on_prepared(self, job) -> None:
        self.progress_bar.setRange(0, len(job.indices))
        self.progress_bar.setValue(0)
        self.status_label.setText(f"{len(job.indices)} frames with {job.segmenter.name}…")

    def _on_progress(self, p: ann.Progress) -> None:
        if self.progress_bar.maximum() != p.total:
            self.progress_bar.setRange(0, p.total)
        self.progress_bar.setValue(p.done)
        if p.stage == "finishing":
            self.status_label.setText("finishing the video and the zip…")
        else:
            self.status_label.setText(f"{p.done}/{p.total} frames · {p.fps:.1f} frames/s · "
                                      f"{_fmt_time(p.elapsed_s)} elapsed · {_fmt_time(p.eta_s)} left")

    @Slot(object)
    def _on_succeeded(self, result: ann.AnnotateResult) -> None:
        if self._closed:
            return
        self.result = result
        self.progress_bar.setRange(0, max(result.frames, 1))
        self.progress_bar.setValue(result.frames)
        if result.already_complete:
            text = f"Already complete: {result.frames} frames in {result.out_dir}."
        else:
            codec = ""
            if result.codec:
                codec = " (overlay: H.264)" if result.codec == "avc1" else f" (overlay: {result.codec_name}, no H.264 here)"
            text = (f"Done: {result.frames} frames in {result.seconds:.1f} s, {result.fps:.1f} frames/s{codec}. "
                    f"Wrote {', '.join(result.files)}.")
        self.status_label.setText(text)
        self.open_button.setEnabled(True)
        self.open_button.setFocus()
        self._finish("done")

    def _on_failed(self, message: str) -> None:
        self.error = message
        self._show_error(message)
        self._finish("failed")
        out = self.out_edit.text().strip()
        if out and (Path(out) / ann.JOB_FILE).is_file() and not self.overwrite_check.isChecked():
            self.resume_check.setChecked(True)  # finished frames were kept: Start continues them

    def _on_cancelled(self) -> None:
        self.status_label.setText("Cancelled. Finished frames are kept: press Start to continue where it stopped.")
        self.progress_bar.setRange(0, max(self.progress_bar.maximum(), 1))
        self._finish("cancelled")

    def _finish(self, state: str) -> None:
        if self.worker is not None:
            self.worker.done.wait(5.0)  # its last signal was just delivered: it is ending now
            self.worker = None
        self.state = state
        self._set_inputs_enabled(True)
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if state == "cancelled":
            self.resume_check.setChecked(True)
        self.job_finished.emit(state)

    def _show_error(self, message: str) -> None:
        self.status_label.setText(f"<span style='color:#e05555'>Error: {_escape(plain_words(message))}</span>")
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)

    def _set_inputs_enabled(self, on: bool) -> None:
        for w in self._inputs:
            w.setEnabled(on)

    # ---- closing -------------------------------------------------------------------------------
    def _stop_worker(self) -> None:
        self._closed = True  # signals still queued from the job are ignored from now on
        if self.worker is not None and not self.worker.done.is_set():
            self.worker.cancel()
            self.worker.done.wait()

    def reject(self) -> None:
        self._stop_worker()
        super().reject()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        self._stop_worker()
        super().closeEvent(event)


def plain_words(message: str) -> str:
    """The engine speaks CLI (``--resume``); the dialog names its own check boxes instead."""
    return (message.replace("--resume", "\"Continue where an earlier run stopped\"")
            .replace("--overwrite", "\"Replace what an earlier run wrote\"")
            .replace("--every", "\"Frames: every\""))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
