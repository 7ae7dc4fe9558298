"""Help > Keyboard shortcuts and Help > About: small non-modal windows with plain text."""
from __future__ import annotations

import platform
import sys
from importlib import metadata

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def about_text(model: str | None, providers: list[str]) -> str:
    """Versions, the serving model and the backend: what a bug report needs."""
    import cv2
    import numpy
    import onnxruntime

    backend = ", ".join(p.replace("ExecutionProvider", "") for p in providers) or "none (no model running)"
    return "\n".join([
        "TopFormer Studio: live semantic segmentation with TopFormer in ONNX Runtime.",
        "",
        f"Model: {model or 'none'}",
        f"Backend: {backend}",
        "",
        f"TopFormer Studio {_version('topformer-studio')}",
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}",
        f"ONNX Runtime {onnxruntime.__version__} (available: {', '.join(onnxruntime.get_available_providers())})",
        f"PySide6 {pyside_version}, Qt {qVersion()}",
        f"OpenCV {cv2.__version__}, NumPy {numpy.__version__}",
        f"Executable: {sys.executable}",
    ])


class _Window(QDialog):
    def __init__(self, parent: QWidget | None, title: str):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.layout_ = QVBoxLayout(self)

    def finish(self) -> None:
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        self.layout_.addWidget(buttons)


class ShortcutsDialog(_Window):
    def __init__(self, parent: QWidget | None, rows: list[tuple[str, str]]):
        super().__init__(parent, "Keyboard shortcuts")
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Keys", "Does"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, (keys, text) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(keys))
            self.table.setItem(row, 1, QTableWidgetItem(text))
        self.layout_.addWidget(self.table)
        self.finish()
        self.resize(420, 480)


class AboutDialog(_Window):
    def __init__(self, parent: QWidget | None, text: str):
        super().__init__(parent, "About TopFormer Studio")
        self.label = QLabel(text)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.layout_.addWidget(self.label)
        self.finish()
