"""Dark/light theme via qdarktheme, applied only here; falls back to Qt's Fusion if it fails.

qdarktheme 2.1 is old: ``setup_theme`` works on PySide6 6.7 and 6.12, but a future Qt may
break it, and a broken theme must never stop the app from starting.
"""
from __future__ import annotations

import logging

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

log = logging.getLogger(__name__)

# Widgets owned by the app that need their own look in both themes (object names).
EXTRA_QSS = """
QFrame#ErrorBanner { background: #8c1d18; border-radius: 4px; }
QFrame#InfoBanner { background: #1d4f8c; border-radius: 4px; }
QFrame#ErrorBanner QLabel, QFrame#InfoBanner QLabel, QFrame#ErrorBanner QToolButton,
QFrame#InfoBanner QToolButton { color: #ffffff; background: transparent; }
QLabel#EmptyTitle { font-size: 20px; font-weight: 600; }
"""


def apply_theme(app: QApplication, theme: str) -> str:
    """Apply ``dark`` or ``light``; returns the name of what was applied."""
    theme = theme if theme in ("dark", "light") else "dark"
    try:
        import qdarktheme

        qdarktheme.setup_theme(theme, additional_qss=EXTRA_QSS)
        return theme
    except Exception as exc:  # noqa: BLE001 - any failure here falls back to Fusion
        log.warning("qdarktheme failed (%s); using Fusion", exc)
    app.setStyle("Fusion")
    app.setPalette(_fusion_palette(theme))
    app.setStyleSheet(EXTRA_QSS)
    return f"{theme} (fusion)"


def _fusion_palette(theme: str) -> QPalette:
    if theme == "light":
        return QApplication.style().standardPalette()
    palette = QPalette()
    colors = {
        QPalette.ColorRole.Window: "#202124", QPalette.ColorRole.WindowText: "#e8eaed",
        QPalette.ColorRole.Base: "#17181a", QPalette.ColorRole.AlternateBase: "#26282b",
        QPalette.ColorRole.Text: "#e8eaed", QPalette.ColorRole.Button: "#2d2f33",
        QPalette.ColorRole.ButtonText: "#e8eaed", QPalette.ColorRole.Highlight: "#8ab4f8",
        QPalette.ColorRole.HighlightedText: "#202124", QPalette.ColorRole.ToolTipBase: "#2d2f33",
        QPalette.ColorRole.ToolTipText: "#e8eaed",
    }
    for role, color in colors.items():
        palette.setColor(role, QColor(color))
    return palette
