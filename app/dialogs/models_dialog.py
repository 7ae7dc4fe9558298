"""Models dialog: what is installed (with its speed here), download ADE20K, import a checkpoint, remove.

Non-modal, and every slow step (measuring speed, downloading, converting) runs through
app/dialogs/jobs.py, so the video keeps playing while a model is being added. ``models_changed``
tells the main window to read the registry again.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton, QTableWidget,
                               QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from engine.models.datasets import dataset_info, known_datasets
from engine.models.download import OFFICIAL_CHECKPOINTS
from engine.errors import StudioError
from engine.models.registry import ModelEntry, Registry

from . import model_tasks as tasks
from .jobs import Job, JobRunner
from ..settings_store import SettingsStore

COLUMNS = ("Model", "Dataset", "Classes", "Accuracy", "Size", "Speed here")


class ModelsDialog(QDialog):
    models_changed = Signal(str)  # name of the model added or removed
    use_requested = Signal(str)

    def __init__(self, parent: QWidget | None, models_dir: Path, settings: SettingsStore, measure: bool = True,
                 cache_dir: Path | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.models_dir, self.settings, self.cache_dir = Path(models_dir), settings, cache_dir
        self.runner = JobRunner(self)
        self.entries: list[ModelEntry] = []
        self._measuring: set[str] = set()
        self._busy_job: Job | None = None
        self._closed = False  # queued job signals may still arrive after close: they are ignored then
        self.tabs = QTabWidget()
        self.tabs.addTab(self._installed_tab(), "Installed")
        self.tabs.addTab(self._download_tab(), "Download")
        self.tabs.addTab(self._import_tab(), "Import checkpoint")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self.resize(760, 420)
        self.refresh(measure)

    # -- tabs ----------------------------------------------------------------------------------------
    def _installed_tab(self) -> QWidget:
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setWordWrap(True)
        header = self.table.horizontalHeader()
        for col in range(len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.use_button = QPushButton("Use this model")
        self.use_button.clicked.connect(lambda: self.selected() and self.use_requested.emit(self.selected()))
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(lambda: self.selected() and self.remove(self.selected()))
        self.measure_button = QPushButton("Measure speed again")
        self.measure_button.setToolTip("Speed here: median of 7 rounds over all models in turn, on this machine, "
                                       "while the app plays. Measure again when the machine is quieter.")
        self.measure_button.clicked.connect(self.measure_again)
        self.installed_status = QLabel("")
        self.installed_status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.use_button)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        buttons.addWidget(self.measure_button)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.installed_status)
        layout.addLayout(buttons)
        return page

    def _download_tab(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        intro = QLabel("The official TopFormer models trained on ADE20K know 150 classes of indoor and outdoor "
                       "scenes (wall, floor, person, table, sky...). A broken download resumes where it stopped.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.variant_combo = QComboBox()
        for key, official in OFFICIAL_CHECKPOINTS.items():
            self.variant_combo.addItem(f"ADE20K {key.capitalize()} (official val mIoU {official.miou:.1f} %)", key)
        self.download_button = QPushButton("Download and install")
        self.download_button.clicked.connect(lambda: self.download(self.variant_combo.currentData()))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.addWidget(self.variant_combo, 1)
        row.addWidget(self.download_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.download_progress = QProgressBar()
        self.download_progress.setVisible(False)
        self.download_status = QLabel("")
        self.download_status.setWordWrap(True)
        layout.addWidget(self.download_progress)
        layout.addWidget(self.download_status)
        layout.addStretch(1)
        return page

    def _import_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.import_path = QLineEdit()
        self.import_path.setPlaceholderText("a TopFormer checkpoint in the official mmseg layout (.pth)")
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.import_path, 1)
        path_row.addWidget(browse)
        form.addRow("Checkpoint", path_row)
        self.dataset_combo = QComboBox()
        self.dataset_combo.addItem("Found from its class count", None)  # official checkpoints name no dataset
        for name in known_datasets():
            info = dataset_info(name)
            self.dataset_combo.addItem(f"{info.title} ({info.num_classes} classes)", name)
        form.addRow("Trained on", self.dataset_combo)
        self.import_name = QLineEdit()
        self.import_name.setPlaceholderText("default: dataset-variant, e.g. ade20k-tiny")
        form.addRow("Name", self.import_name)
        self.import_button = QPushButton("Import")
        self.import_button.clicked.connect(lambda: self.import_checkpoint(
            self.import_path.text().strip(), self.dataset_combo.currentData(), self.import_name.text().strip()))
        form.addRow("", self.import_button)
        self.import_progress = QProgressBar()
        self.import_progress.setVisible(False)
        self.import_status = QLabel("")
        self.import_status.setWordWrap(True)
        form.addRow(self.import_progress)
        form.addRow(self.import_status)
        if not tasks.torch_available():
            self.import_status.setText(tasks.TORCH_MISSING)
        return page

    def show_tab(self, which: str) -> None:
        self.tabs.setCurrentIndex({"installed": 0, "download": 1, "import": 2}.get(which, 0))

    # -- installed -----------------------------------------------------------------------------------
    def refresh(self, measure: bool = True) -> None:
        try:
            self.entries = Registry(self.models_dir).entries()
        except StudioError as exc:
            self.entries = []
            self.installed_status.setText(str(exc))
        if measure:  # first, so that their cells say "measuring…"
            self.measure([e for e in self.entries if self.settings.speed_ms(e.sha256) is None])
        self.table.setRowCount(len(self.entries))
        for row, entry in enumerate(self.entries):
            cells = (entry.name, entry.dataset, str(entry.num_classes), tasks.accuracy_text(entry),
                     tasks.file_size_text(self.models_dir, entry), self._speed_text(entry))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text if col != 0 else entry.notes or entry.made_by)
                item.setData(Qt.ItemDataRole.UserRole, entry.name)
                self.table.setItem(row, col, item)
        self.table.resizeRowsToContents()
        self._on_selection()

    def _speed_text(self, entry: ModelEntry) -> str:
        ms = self.settings.speed_ms(entry.sha256)
        if entry.name in self._measuring:
            return "measuring…"
        return f"{ms:.0f} ms/frame (640x360)" if ms is not None else "not measured"

    def speed_cell(self, name: str) -> str:
        row = next((i for i, e in enumerate(self.entries) if e.name == name), None)
        item = self.table.item(row, 5) if row is not None else None
        return item.text() if item is not None else ""

    def measure(self, entries: list[ModelEntry]) -> None:
        """Measure these models' speed in one job, round by round (``tasks.measure_speeds``)."""
        entries = [e for e in entries if e.name not in self._measuring]
        if not entries:
            return
        self._measuring.update(e.name for e in entries)
        self.measure_button.setEnabled(False)
        names = [e.name for e in entries]
        self.runner.start("measuring " + ", ".join(names),
                          lambda j: tasks.measure_speeds(self.models_dir, names, cancel=j.cancel_event),
                          finished=lambda result, es=entries: self._on_measured(es, *result),
                          failed=lambda msg, es=entries: self._on_measured(es, {}, {"": msg}))

    def measure_again(self) -> None:
        """Measure every installed model again (a cached figure may come from a busy moment)."""
        self.installed_status.setText("")
        self.measure(self.entries)
        self.refresh(measure=False)

    def _on_measured(self, entries: list[ModelEntry], ms: dict[str, float], problems: dict[str, str]) -> None:
        if self._closed:
            return
        for entry in entries:
            self._measuring.discard(entry.name)
            if entry.name in ms:
                self.settings.set_speed_ms(entry.sha256, float(ms[entry.name]))
        shown = [m for m in problems.values() if m != "Cancelled."]
        if shown:
            self.installed_status.setText("Could not measure the speed: " + "; ".join(shown))
        self.measure_button.setEnabled(not self._measuring)
        self.refresh(measure=False)

    def selected(self) -> str | None:
        items = self.table.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def select(self, name: str) -> None:
        row = next((i for i, e in enumerate(self.entries) if e.name == name), -1)
        self.table.selectRow(row)

    def _on_selection(self) -> None:
        entry = next((e for e in self.entries if e.name == self.selected()), None)
        self.use_button.setEnabled(entry is not None)
        removable = entry is not None and tasks.is_user_added(entry)
        self.remove_button.setEnabled(removable)
        self.remove_button.setToolTip("" if removable or entry is None else "Models that came with the app stay")

    def remove(self, name: str) -> None:
        try:
            tasks.remove_model(self.models_dir, name)
        except StudioError as exc:
            self.installed_status.setText(str(exc))
            return
        self.installed_status.setText(f"Removed {name}.")
        self.refresh(measure=False)
        self.models_changed.emit(name)

    # -- download and import -----------------------------------------------------------------------------
    def download(self, variant: str) -> Job | None:
        self.tabs.setCurrentIndex(1)
        return self._run(f"download of ADE20K {variant}", self.download_progress, self.download_status,
                         lambda job: tasks.download_and_install(self.models_dir, variant, job.report, job.cancel_event,
                                                                self.cache_dir),
                         f"Downloading ADE20K {variant.capitalize()}…")

    def import_checkpoint(self, path: str, dataset: str | None, name: str = "") -> Job | None:
        self.tabs.setCurrentIndex(2)
        if not path or not Path(path).is_file():
            self.import_status.setText(f"Choose a checkpoint file first ({path or 'none chosen'} is not a file).")
            return None
        return self._run(f"import of {Path(path).name}", self.import_progress, self.import_status,
                         lambda job: tasks.import_file(self.models_dir, Path(path), dataset, name or None),
                         f"Converting {Path(path).name} to ONNX (this takes a while)…")

    def _run(self, what: str, bar: QProgressBar, status: QLabel, fn, start_text: str) -> Job | None:
        if self._busy_job is not None:
            status.setText("Another download or import is running; wait for it or cancel it.")
            return None
        if not tasks.torch_available():
            status.setText(tasks.TORCH_MISSING)
            return None
        bar.setRange(0, 0)  # unknown until the first progress report
        bar.setVisible(True)
        status.setText(start_text)
        self._set_busy(True)
        job = self.runner.start(what, fn, progress=lambda done, total: self._on_progress(bar, done, total),
                                finished=lambda entry: self._on_job_done(bar, status, entry, ""),
                                failed=lambda message: self._on_job_done(bar, status, None, message))
        self._busy_job = job
        return job

    def _on_progress(self, bar: QProgressBar, done: int, total: int) -> None:
        if self._closed:
            return
        if total > 0:
            bar.setRange(0, 1000)
            bar.setValue(int(1000 * done / total))
            bar.setFormat(f"{done / 1e6:.1f} of {total / 1e6:.1f} MB")
        else:
            bar.setRange(0, 0)

    def _on_job_done(self, bar: QProgressBar, status: QLabel, entry, message: str) -> None:
        if self._closed:
            return
        self._busy_job = None
        self._set_busy(False)
        bar.setVisible(False)
        if entry is None:
            status.setText(message)
            return
        status.setText(f"Installed {entry.name}: {entry.num_classes} classes. Choose it in the model list.")
        self.refresh(measure=False)
        self.models_changed.emit(entry.name)

    def _set_busy(self, busy: bool) -> None:
        self.download_button.setEnabled(not busy)
        self.import_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def cancel(self) -> None:
        if self._busy_job is not None:
            self._busy_job.cancel()
            self.download_status.setText("Cancelling…")

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a TopFormer checkpoint", str(Path.home()),
                                              "PyTorch checkpoints (*.pth *.pt);;All files (*)")
        if path:
            self.import_path.setText(path)

    def closeEvent(self, event: QCloseEvent) -> None:
        self._closed = True
        self.runner.shutdown(3000)
        super().closeEvent(event)
