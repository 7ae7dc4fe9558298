"""Live speed/accuracy chart (QPainter; QtCharts is not in PySide6-Essentials).

Like the paper's figure, but the latency axis is measured now on this machine: one point per
(model, scale), x = median inference ms, y = the model's mIoU from the manifest. A filled
point runs its network at about the input size the accuracy was measured at; a hollow one at
another size, so its height is only a guide (``measured_at_this_input``). The mIoU is the
one on a CamVid drive the models never trained on when every model shown has it (val shares
a drive with training and flatters: it once ranked scratch models 10 points too high), else val's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from engine.models.registry import unseen_where

COLORS = [QColor(86, 180, 233), QColor(230, 159, 0), QColor(0, 158, 115), QColor(204, 121, 167),
          QColor(240, 228, 66), QColor(213, 94, 0)]


@dataclass
class ChartPoint:
    label: str
    model: str
    ms: float
    miou_pct: float | None  # None: the manifest has no accuracy for this model
    same_scale: bool  # the accuracy was measured at this point's scale


VAL_TITLE = "val mIoU % (manifest)"
SAME_INPUT = 1.15  # input long sides within this ratio count as the measured input


def measured_at_this_input(input_long_side: int | None, accuracy_long_side: int | None,
                           scale: str, accuracy_scale: str) -> bool:
    """Whether a pane feeds its network about the input its manifest accuracy was measured at.

    By input size where the manifest says it (a CamVid model was measured on 480 px frames: a
    960x540 clip at half is that input, at full it is twice it); else by the scale's name."""
    if input_long_side and accuracy_long_side:
        return 1 / SAME_INPUT <= input_long_side / accuracy_long_side <= SAME_INPUT
    return bool(accuracy_scale) and accuracy_scale == scale


def accuracy_axis(panes) -> tuple[str, list[float | None]]:
    """(y-axis title, mIoU % per pane) for panes with ``accuracy_miou`` and ``unseen``.

    The unseen-drive figure when every pane's model has one on the same drive, so the points
    stay comparable; otherwise the manifest's val figure for all."""
    unseen = [p.unseen for p in panes]
    drives = {u[1] for u in unseen if u is not None}
    if unseen and None not in unseen and len(drives) == 1:
        estimate = " (est.)" if any(u[2] for u in unseen) else ""
        return f"mIoU % on {unseen_where(drives.pop())}{estimate}", [100.0 * u[0] for u in unseen]
    return VAL_TITLE, [None if p.accuracy_miou is None else 100.0 * p.accuracy_miou for p in panes]


def nice_step(span: float, ticks: int = 5) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


class TradeoffChart(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(260, 200)
        self._points: dict[str, ChartPoint] = {}
        self._model_colors: dict[str, QColor] = {}
        self.y_title = VAL_TITLE

    def set_y_title(self, title: str) -> None:
        if title != self.y_title:
            self.y_title = title
            self.update()

    @property
    def points(self) -> list[ChartPoint]:
        return list(self._points.values())

    def set_point(self, label: str, model: str, ms: float, miou_pct: float | None, same_scale: bool = True) -> None:
        """Add or move the point of one (model, scale); repaints."""
        if model not in self._model_colors:
            self._model_colors[model] = COLORS[len(self._model_colors) % len(COLORS)]
        self._points[label] = ChartPoint(label, model, float(ms), miou_pct, bool(same_scale))
        self.update()

    def clear(self) -> None:
        self._points.clear()
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(360, 280)

    def _ranges(self) -> tuple[float, float, float, float]:
        pts = [p for p in self._points.values() if p.ms > 0]
        x_max = max((p.ms for p in pts), default=100.0) * 1.2
        ys = [p.miou_pct for p in self._points.values() if p.miou_pct is not None]
        y_lo, y_hi = (min(ys), max(ys)) if ys else (50.0, 70.0)
        pad = max(2.0, (y_hi - y_lo) * 0.25)
        return 0.0, max(x_max, 1.0), max(0.0, y_lo - pad), min(100.0, y_hi + pad)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: ARG002
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor(24, 24, 28))
        metrics = painter.fontMetrics()
        left, bottom, top, right = metrics.horizontalAdvance("100.0") + 22, metrics.height() * 2 + 12, metrics.height() + 12, 14
        plot = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))
        x0, x1, y0, y1 = self._ranges()

        def at(ms: float, miou: float) -> QPointF:
            return QPointF(plot.left() + (ms - x0) / (x1 - x0) * plot.width(),
                           plot.bottom() - (miou - y0) / (y1 - y0) * plot.height())

        grid, text = QPen(QColor(70, 70, 78), 1), QColor(200, 200, 205)
        painter.setPen(text)
        painter.drawText(QRectF(0, 2, self.width(), metrics.height() + 4), int(Qt.AlignmentFlag.AlignHCenter),
                         "speed vs accuracy (this machine)")
        step = nice_step(x1 - x0)
        v = 0.0
        while v <= x1 + 1e-9:
            p = at(v, y0)
            painter.setPen(grid)
            painter.drawLine(QPointF(p.x(), plot.top()), QPointF(p.x(), plot.bottom()))
            painter.setPen(text)
            painter.drawText(QRectF(p.x() - 30, plot.bottom() + 2, 60, metrics.height()),
                             int(Qt.AlignmentFlag.AlignHCenter), f"{v:g}")
            v += step
        step = nice_step(y1 - y0, 4)
        v = math.ceil(y0 / step) * step
        while v <= y1 + 1e-9:
            p = at(x0, v)
            painter.setPen(grid)
            painter.drawLine(QPointF(plot.left(), p.y()), QPointF(plot.right(), p.y()))
            painter.setPen(text)
            painter.drawText(QRectF(0, p.y() - metrics.height() / 2, left - 6, metrics.height()),
                             int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), f"{v:g}")
            v += step
        painter.drawText(QRectF(plot.left(), plot.bottom() + metrics.height() + 4, plot.width(), metrics.height()),
                         int(Qt.AlignmentFlag.AlignHCenter), "inference ms (median, measured now)")
        painter.save()
        painter.translate(10, plot.center().y())
        painter.rotate(-90)
        painter.drawText(QRectF(-plot.height() / 2, -metrics.height() / 2 - 2, plot.height(), metrics.height()),
                         int(Qt.AlignmentFlag.AlignHCenter), self.y_title)
        painter.restore()
        painter.setPen(QPen(QColor(140, 140, 150), 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(plot)
        by_model: dict[str, list[ChartPoint]] = {}
        for point in self._points.values():
            by_model.setdefault(point.model, []).append(point)
        for model, points in by_model.items():  # a faint line joins the scales of one model
            color = self._model_colors[model]
            placed = sorted((p for p in points if p.miou_pct is not None and p.ms > 0), key=lambda p: p.ms)
            painter.setPen(QPen(QColor(color.red(), color.green(), color.blue(), 110), 1, Qt.PenStyle.DashLine))
            for a, b in zip(placed, placed[1:]):
                painter.drawLine(at(a.ms, a.miou_pct), at(b.ms, b.miou_pct))
        ordered = sorted(self._points.values(), key=lambda p: (p.miou_pct or 0.0, p.ms))
        for n, point in enumerate(ordered):  # labels alternate above/below so neighbours do not collide
            color = self._model_colors[point.model]
            y = point.miou_pct if point.miou_pct is not None else y0
            centre = at(max(point.ms, 0.0), y)
            painter.setPen(QPen(color, 2))
            painter.setBrush(color if point.same_scale else Qt.BrushStyle.NoBrush)
            painter.drawEllipse(centre, 5.5, 5.5)
            painter.setPen(text)
            label = point.label if point.miou_pct is not None else f"{point.label} (no accuracy)"
            width = metrics.horizontalAdvance(label)
            x = centre.x() + 8 if centre.x() + 8 + width < plot.right() else centre.x() - 8 - width
            painter.drawText(QPointF(x, centre.y() - 8 if n % 2 == 0 else centre.y() + metrics.ascent() + 6), label)
        painter.end()
