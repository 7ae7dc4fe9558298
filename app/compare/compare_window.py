"""The compare window: 2 to 4 (model, scale) panes on the same frames, a live trade-off chart, a swipe view.

Opened by ``main.py --compare MODEL:SCALE,...`` or from the main window's menu (default panes:
Tiny half, Tiny full, Base full). All inference happens on CompareWorker's thread; this
window only paints the newest set. A pane whose model fails shows a banner; the others go on.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QHBoxLayout, QLabel, QLineEdit,
                               QMainWindow, QPushButton, QSizePolicy, QSplitter, QStackedWidget, QVBoxLayout, QWidget)

from engine.jobs.compare import DEFAULT_PANES, MAX_PANES, PaneSpec, parse_pane_spec
from engine.errors import StudioError
from engine.models.registry import Registry
from engine.io.sources import open_source

from .compare_worker import CompareSet, CompareWorker, PaneFrame
from ..panels.error_banner import BannerStack
from .swipe_view import PaneView, SwipeView
from .tradeoff_chart import TradeoffChart, accuracy_axis, measured_at_this_input

MIN_PANES = 2


def split_panes(text: str) -> list[str]:
    """The items of a ``--compare`` list; StudioError when the count is not 2..4 or an item is empty."""
    items = [t.strip() for t in (text or "").split(",")]
    if any(not t for t in items):
        raise StudioError(f"bad --compare list {text!r}: write MODEL:SCALE,MODEL:SCALE (no empty items)")
    if not MIN_PANES <= len(items) <= MAX_PANES:
        raise StudioError(f"--compare wants {MIN_PANES} to {MAX_PANES} panes, not {len(items)} ({text})")
    return items


def parse_panes_lenient(items: list[str], models_dir: Path | str | None) -> tuple[list[PaneSpec], list[str]]:
    """Specs plus one error per item ("" when fine): a bad item becomes a pane with a banner."""
    specs, errors = [], []
    try:
        registry = Registry(models_dir)
    except StudioError as exc:
        registry, reg_error = None, str(exc)
    for item in items:
        try:
            if registry is None:
                raise StudioError(reg_error)
            specs.append(parse_pane_spec(item, registry))
            errors.append("")
        except StudioError as exc:
            model, _, scale = item.partition(":")
            specs.append(PaneSpec(model.strip() or "?", scale.strip() or "full"))
            errors.append(str(exc))
    return specs, errors


def pane_lines(pane: PaneFrame) -> list[str]:
    """The numbers drawn on a pane: short, so they fit a quarter of the window."""
    head = f"{pane.spec.label}" + ("  (reference)" if pane.is_reference else "")
    lines = [head, f"frame {pane.frame_index} · {pane.ms_median:.1f} ms · {pane.fps:.1f} fps"]
    if not pane.comparable:
        lines.append("agreement n/a (other classes)")
    elif not pane.is_reference:
        lines.append(f"agree {pane.agreement_pct:.1f} % · mIoU {pane.miou_pct:.1f} %")
    lines.append(f"skipped {pane.skipped}")
    return lines


class CompareWindow(QMainWindow):
    set_shown = Signal(object)  # CompareSet, after the panes were updated

    def __init__(self, panes: str | list[str] = DEFAULT_PANES, models_dir: Path | str | None = None,
                 source: str | None = None, realtime: bool = True, opener=open_source, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("TopFormer Studio — compare")
        self.models_dir, self._opener, self._realtime = models_dir, opener, realtime
        self.source_spec: str | None = None
        self.last_set: CompareSet | None = None
        self.sets_shown = 0
        self._old_workers: list[CompareWorker] = []
        self.banner = BannerStack(self)
        self.status = QLabel("no source: open a video", self)
        self.chart = TradeoffChart(self)
        self.swipe = SwipeView(self)
        self.table = QLabel(self)
        self.table.setTextFormat(Qt.TextFormat.RichText)
        self.table.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.table.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._build_controls()
        self.grid_page = QWidget(self)
        self.grid = QGridLayout(self.grid_page)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(4)
        self.grid_page.installEventFilter(self)  # its resizes re-arrange two panes (_arrange_panes)
        self._aspect = 16 / 9  # the source's width / height, once it is open
        self._columns = 0  # how many grid columns the panes use now (0: not placed yet)
        self.swipe_page = QWidget(self)
        self._swipe_page_layout = QVBoxLayout(self.swipe_page)
        self._swipe_page_layout.setContentsMargins(0, 0, 0, 0)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.grid_page)
        self.stack.addWidget(self.swipe_page)
        side = QWidget(self)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.chart, 3)
        side_layout.addWidget(self.table, 2)
        side.setMinimumWidth(300)
        side.setMaximumWidth(480)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.stack)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([1000, 420])
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(self._controls)
        layout.addWidget(self.banner)
        layout.addWidget(splitter, 1)
        self.setCentralWidget(central)
        self.pane_views: list[PaneView] = []
        self.worker: CompareWorker | None = None
        self.set_panes(panes if isinstance(panes, str) else ",".join(panes))
        if source is not None:
            self.open_source(str(source))

    # -- building ------------------------------------------------------------------------------------
    def _build_controls(self) -> None:
        self._controls = QHBoxLayout()
        open_button = QPushButton("Open video…", self)
        open_button.clicked.connect(self._choose_video)
        self.spec_edit = QLineEdit(self)
        self.spec_edit.setMinimumWidth(280)
        self.spec_edit.setPlaceholderText("MODEL:SCALE,MODEL:SCALE (2 to 4)")
        self.spec_edit.setToolTip("Panes: installed model (or tiny/small/base) and scale (full, half or a factor)")
        self.spec_edit.returnPressed.connect(lambda: self._apply_panes(self.spec_edit.text()))
        apply_button = QPushButton("Apply", self)
        apply_button.clicked.connect(lambda: self._apply_panes(self.spec_edit.text()))
        self.swipe_check = QCheckBox("Large swipe", self)
        self.swipe_check.setToolTip("Two panes of the same frame under a draggable divider, over the whole area")
        self.swipe_check.toggled.connect(self._set_swipe)
        self.swipe_left, self.swipe_right = QComboBox(self), QComboBox(self)
        for combo in (self.swipe_left, self.swipe_right):
            combo.currentIndexChanged.connect(self._refresh_swipe)
        for widget in (open_button, QLabel("Panes:", self), self.spec_edit, apply_button, self.swipe_check,
                       self.swipe_left, QLabel("vs", self), self.swipe_right):
            self._controls.addWidget(widget)
        self._controls.addWidget(self.status, 1)

    def set_panes(self, text: str) -> None:
        """(Re)build the panes from ``text`` and start a worker for them; raises StudioError on a bad count."""
        items = split_panes(text)
        specs, errors = parse_panes_lenient(items, self.models_dir)
        self._stop_worker()
        for view in self.pane_views:
            self.grid.removeWidget(view)
            view.deleteLater()
        self.pane_views = [PaneView(s.label, self.grid_page) for s in specs]
        for view, error in zip(self.pane_views, errors):
            if error:
                view.set_error(error)
        self._columns = 0
        self._arrange_panes()
        self._place_swipe()
        self.spec_edit.setText(",".join(f"{s.model}:{s.scale}" for s in specs))
        for combo, default in ((self.swipe_left, 0), (self.swipe_right, 1)):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([s.label for s in specs])
            combo.setCurrentIndex(default)
            combo.blockSignals(False)
        self.chart.clear()
        self.last_set = None
        self.worker = CompareWorker(specs, self.models_dir, errors, opener=self._opener, parent=self)
        self.worker.set_ready.connect(self._on_set_ready)
        self.worker.pane_failed.connect(self._on_pane_failed)
        self.worker.source_failed.connect(lambda msg: self.banner.show_message(msg, "source"))
        self.worker.source_opened.connect(self._on_source_opened)
        self.worker.set_realtime(self._realtime)
        self.worker.start()
        self._update_render_size()
        if self.source_spec is not None:
            self.worker.open_source(self.source_spec)

    def _apply_panes(self, text: str) -> None:
        try:
            self.set_panes(text)
            self.banner.clear("panes")
        except StudioError as exc:
            self.banner.show_message(str(exc), "panes")

    def open_source(self, spec: str) -> None:
        self.source_spec = str(spec)
        if self.worker is not None:
            self.worker.open_source(self.source_spec)

    def _choose_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a video to compare on", "",
                                              "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)")
        if path:
            self.open_source(path)

    # -- updates (UI thread) ----------------------------------------------------------------------------
    def _on_source_opened(self, info) -> None:
        self.banner.clear("source")
        self.status.setText(f"{info.description}")
        if info.width > 0 and info.height > 0:
            self._aspect = info.width / info.height
            self._arrange_panes()

    def _on_pane_failed(self, index: int, message: str) -> None:
        if 0 <= index < len(self.pane_views):
            self.pane_views[index].set_error(message)

    def _on_set_ready(self) -> None:
        if self.worker is None:
            return
        compare_set = self.worker.take_set()
        if compare_set is None:
            return
        self.last_set = compare_set
        self.sets_shown += 1
        rows = []
        title, mious = accuracy_axis(compare_set.panes)
        self.chart.set_y_title(title)
        for view, pane, miou in zip(self.pane_views, compare_set.panes, mious):
            if pane.error and not view.error:
                view.set_error(pane.error)
            if pane.image is not None:
                view.set_content(pane.image, pane_lines(pane), pane.frame_index)
                same = measured_at_this_input(max(pane.input_hw) if pane.input_hw else None, pane.accuracy_long_side,
                                              pane.spec.scale, pane.accuracy_scale)
                self.chart.set_point(pane.spec.label, pane.spec.model, pane.ms_median, miou, same)
            rows.append(pane)
        self._update_swipe(compare_set)
        self.table.setText(self._table_html(rows))
        self.status.setText(f"{compare_set.source.description} · frame {compare_set.frame_index} · "
                            f"all panes {compare_set.set_ms:.0f} ms/frame · {compare_set.sets_fps:.1f} sets/s")
        self._update_render_size()
        self.set_shown.emit(compare_set)

    def _arrange_panes(self) -> None:
        """Lay the panes out in the grid: 3 or 4 in two columns; 2 stacked or side by side,
        whichever shows the source's pictures larger in the area there is (an empty column
        gets no width)."""
        columns = 2 if len(self.pane_views) > 2 else pane_columns(
            self.grid_page.width(), self.grid_page.height(), self._aspect)
        if columns == self._columns:
            return
        self._columns = columns
        for view in self.pane_views:
            self.grid.removeWidget(view)
        for i, view in enumerate(self.pane_views):
            self.grid.addWidget(view, i // columns, i % columns)
        rows = -(-len(self.pane_views) // columns)
        for i in range(2):  # equal cells in use, whatever each widget would like; none for an empty one
            self.grid.setColumnStretch(i, int(i < columns))
            self.grid.setRowStretch(i, int(i < rows))

    def _place_swipe(self) -> None:
        """The swipe view fills the grid's free cell (3 panes), or the whole area when Swipe is on."""
        if self.swipe_check.isChecked():
            self._swipe_page_layout.addWidget(self.swipe)
            self.swipe.show()
            self.stack.setCurrentWidget(self.swipe_page)
            return
        self.stack.setCurrentWidget(self.grid_page)
        if len(self.pane_views) == 3:
            self.grid.addWidget(self.swipe, 1, 1)
            self.swipe.show()
        else:
            self.grid.removeWidget(self.swipe)
            self._swipe_page_layout.addWidget(self.swipe)

    def _refresh_swipe(self, _index: int = 0) -> None:
        if self.last_set is not None:
            self._update_swipe(self.last_set)

    def _update_swipe(self, compare_set: CompareSet) -> None:
        if not self.swipe.isVisible():
            return
        a = compare_set.panes[max(0, self.swipe_left.currentIndex())]
        b = compare_set.panes[max(0, self.swipe_right.currentIndex())]
        self.swipe.set_panes(a.image, [a.spec.label, f"{a.ms_median:.1f} ms"], b.image,
                             [b.spec.label, f"{b.ms_median:.1f} ms"], (a.frame_index, b.frame_index))

    @staticmethod
    def _table_html(panes: list[PaneFrame]) -> str:
        head = "<tr><th align=left>pane</th><th>ms</th><th>fps</th><th>agree %</th><th>mIoU vs ref %</th><th>skipped</th></tr>"
        body = []
        for p in panes:
            if p.error:
                body.append(f"<tr><td>{p.spec.label}</td><td colspan=5 style='color:#e66'>failed</td></tr>")
                continue
            agree = "ref" if p.is_reference else f"{p.agreement_pct:.1f}" if p.comparable else "n/a"
            miou = "ref" if p.is_reference else f"{p.miou_pct:.1f}" if p.comparable else "n/a"
            body.append(f"<tr><td>{p.spec.label}</td><td align=right>{p.ms_median:.1f}</td><td align=right>{p.fps:.1f}</td>"
                        f"<td align=right>{agree}</td><td align=right>{miou}</td><td align=right>{p.skipped}</td></tr>")
        note = ("<p style='color:#999'>ms: median of the last 30 frames; fps: that model alone. Agreement and mIoU: "
                "this pane's labels against the reference pane's, last 30 frames. Chart: a hollow point runs at "
                "another input size than its accuracy was measured at, so its height is only a guide.</p>")
        return f"<table cellspacing=4>{head}{''.join(body)}</table>{note}"

    def _set_swipe(self, on: bool) -> None:  # noqa: ARG002 - the check box's state is read in _place_swipe
        self._place_swipe()
        if self.last_set is not None:
            self._update_swipe(self.last_set)
        self._update_render_size()

    def _update_render_size(self) -> None:
        """Render pane pictures at the largest visible picture's size in device pixels."""
        if self.worker is None:
            return
        ratio = self.devicePixelRatioF()
        views = [self.swipe] if self.swipe_check.isChecked() else self.pane_views + [self.swipe] * self.swipe.isVisible()
        w = max((v.width() for v in views), default=640)
        h = max((v.height() for v in views), default=360)
        self.worker.set_render_size(int(w * ratio), int(h * ratio))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._update_render_size()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.grid_page and event.type() == QEvent.Type.Resize:
            self._arrange_panes()
        return super().eventFilter(watched, event)

    # -- shutting down --------------------------------------------------------------------------------------
    def _stop_worker(self) -> None:
        """Ask the worker to stop without waiting on the UI thread; closeEvent joins it."""
        if self.worker is not None:
            self.worker.set_ready.disconnect(self._on_set_ready)  # a stopping worker's last set is stale
            self.worker.pane_failed.disconnect(self._on_pane_failed)
            self.worker.request_stop()
            self._old_workers.append(self.worker)
            self.worker = None

    def threads_alive(self) -> list[str]:
        workers = self._old_workers + ([self.worker] if self.worker else [])
        return [name for w in workers for name in w.threads_alive()]

    def closeEvent(self, event) -> None:
        self._stop_worker()
        for worker in self._old_workers:
            worker.stop()
        self._old_workers.clear()
        super().closeEvent(event)


def pane_columns(width: int, height: int, aspect: float) -> int:
    """Columns for two panes in a ``width`` x ``height`` area: 1 (stacked) unless two pictures of
    ``aspect`` (width / height) side by side would be shown larger."""
    if width <= 0 or height <= 0:
        return 1
    stacked = min(width / aspect, height / 2)  # the picture height each arrangement allows
    side_by_side = min(width / 2 / aspect, height)
    return 2 if side_by_side > stacked else 1


def open_compare(parent: QWidget | None, source=None, models_dir: Path | str | None = None,
                 panes: str = DEFAULT_PANES, pause=None) -> CompareWindow:
    """Open the compare view as its own window (what the main window's View menu calls).

    ``source``: the main window's SourceInfo, a path/camera spec, or None (the user opens a video
    there). Default panes: Tiny half, Tiny full, Base full. ``pause``: a window whose playback
    stops first (``set_playing(False)``), so it does not compete with the panes for the CPU.
    The compare window deletes itself when closed.
    """
    spec = getattr(source, "spec", source)
    camera = spec is not None and bool(getattr(source, "is_live", False))
    if pause is not None:
        pause.set_playing(False)
        if camera:  # a camera serves one reader: hand it to the compare view, take it back on close
            pause.close_source()
    window = CompareWindow(panes, models_dir=models_dir, source=None if spec is None else str(spec), parent=parent)
    window.setWindowFlag(Qt.WindowType.Window, True)
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    if pause is not None and camera:
        window.destroyed.connect(lambda *_: pause.take_back_source(str(spec)))
    window.resize(1440, 900)
    window.show()
    return window
