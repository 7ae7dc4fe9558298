"""The "Annotate video…" action opens the annotate dialog, or says clearly that it is missing."""
from __future__ import annotations

import importlib.util

import pytest

pytestmark = [pytest.mark.gui]


def test_annotate_action_opens_dialog_or_explains(qtbot, make_window, tmp_path):
    window = make_window(tmp_path / "models")
    action = next(a for a in window.findChildren(type(window.fullscreen_action)) if a.text() == "Annotate video…")
    action.trigger()
    if importlib.util.find_spec("app.dialogs.annotate_dialog") is None:
        assert "not available" in window.last_error
    else:
        qtbot.waitUntil(lambda: getattr(window, "annotate_dialog", None) is not None, timeout=5000)
        assert window.annotate_dialog.isVisible()
        window.annotate_dialog.close()
