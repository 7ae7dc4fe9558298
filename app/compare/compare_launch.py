"""``main.py --compare MODEL:SCALE,...``: the compare window, and its scripted runs.

``--benchmark-frames N`` plays N displayed sets and prints one JSON line (``panes`` and
``frame_index_mismatches``); ``--screenshot PNG`` saves the window after some playback.
Both mirror the single-view modes in benchmark.py / screenshot.py.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from engine.errors import StudioError

from .compare_window import CompareWindow, parse_panes_lenient, split_panes
from .compare_worker import CompareSet, pane_frame_indices
from ..measure.scripted_run import ScriptedRun, run_event_loop
from ..measure.stall_meter import StallMeter


class CompareScriptedRun(ScriptedRun):
    """A scripted compare run: the single view's watchdog and exit code, plus a failing source ends it."""

    def __init__(self, window: CompareWindow, timeout_s: float):
        super().__init__(window, timeout_s, lambda: self._fail("no frames within the time limit"))
        window.worker.source_failed.connect(lambda msg: self._fail(f"source failed: {msg}"))


class CompareBenchmarkRun(CompareScriptedRun):
    """Counts displayed sets; a set whose panes hold different frame indices is a mismatch."""

    def __init__(self, window: CompareWindow, frames: int, out: TextIO = sys.stdout, timeout_s: float = 300.0):
        super().__init__(window, timeout_s)
        self.frames, self.out = max(1, frames), out
        self.meter = StallMeter(parent=self)
        n = len(window.pane_views)
        self._ms: list[list[float]] = [[] for _ in range(n)]
        self._agree: list[list[float]] = [[] for _ in range(n)]
        self._shown_per_pane = [0] * n
        self._shown = 0
        self.mismatches = 0
        self._t0 = 0.0
        window.set_shown.connect(self._on_set)

    def _on_set(self, compare_set: CompareSet) -> None:
        if self.exit_code is None:
            self.refuse_a_still(compare_set.source)
        if self.exit_code is not None:
            return
        if all(p.error for p in compare_set.panes):
            self._fail("every pane failed: " + "; ".join(p.error for p in compare_set.panes))
            return
        if not self._shown:
            self.meter.start()
            self._t0 = time.monotonic()
        self._shown += 1
        if len(pane_frame_indices(compare_set)) > 1:
            self.mismatches += 1
        for i, pane in enumerate(compare_set.panes):
            if pane.image is not None:
                self._shown_per_pane[i] += 1
                self._ms[i].append(pane.ms)
                if pane.comparable:
                    self._agree[i].append(100.0 if pane.is_reference else pane.frame_agreement_pct)
        if self._shown >= self.frames:
            self._finish(compare_set)

    def _finish(self, compare_set: CompareSet) -> None:
        self.meter.stop()
        elapsed = time.monotonic() - self._t0
        panes = []
        for i, pane in enumerate(compare_set.panes):
            ms = statistics.median(self._ms[i]) if self._ms[i] else None
            row = {"model": pane.spec.model, "scale": pane.spec.scale,
                   "inference_ms_median": round(ms, 2) if ms else None,
                   "fps": round(1000.0 / ms, 2) if ms else None,
                   "frames_shown": self._shown_per_pane[i],
                   "agreement_pct": round(statistics.fmean(self._agree[i]), 2) if self._agree[i] else None,
                   "skipped": pane.skipped}
            if pane.error:
                row["error"] = pane.error
            panes.append(row)
        report = {
            "sets": self._shown,
            "source": compare_set.source.description,
            "panes": panes,
            "frame_index_mismatches": self.mismatches,
            "elapsed_s": round(elapsed, 3),
            "sets_fps": round((self._shown - 1) / elapsed, 2) if elapsed > 0 and self._shown > 1 else 0.0,
            "ui_stall_max_ms": round(self.meter.worst_stall_ms, 1),
            "ui_tick_gap_p99_ms": round(self.meter.percentile_gap_ms(99), 1),
            "ui_tick_interval_ms": self.meter.interval_ms,
        }
        print(json.dumps(report), file=self.out, flush=True)
        self._quit(0)


class CompareScreenshotRun(CompareScriptedRun):
    def __init__(self, window: CompareWindow, out: Path, after_s: float = 3.0, timeout_s: float = 120.0):
        super().__init__(window, timeout_s)
        self.out, self.after_s = Path(out), after_s
        self._armed = False
        window.set_shown.connect(self._on_set)

    def _on_set(self, compare_set: CompareSet) -> None:  # noqa: ARG002
        if not self._armed:
            self._armed = True
            QTimer.singleShot(int(self.after_s * 1000), self._take)

    def _take(self) -> None:
        if self.exit_code is not None:
            return
        QApplication.processEvents()
        if not save_grab(self.window, self.out):
            self._fail(f"cannot write {self.out}")
            return
        print(f"saved {self.out}", flush=True)
        self._quit(0)


def save_grab(widget, out: Path) -> bool:
    """Save ``widget.grab()`` as a PNG, atomically (a failed save leaves no file)."""
    from engine.fileio import atomic_output

    try:
        with atomic_output(out) as tmp:
            if not widget.grab().save(str(tmp), "PNG"):
                raise StudioError(f"cannot write {out}")
    except StudioError:
        return False
    return True


def launch_compare(args: argparse.Namespace, window_size: tuple[int, int],
                   preflight: Callable[[argparse.Namespace], str | None] | None = None) -> int:
    """Run the compare window (from app.launch when ``--compare`` is given). ``preflight``: the
    single view's checks before Qt loads (no display, missing X11 libraries, a benchmark source
    that does not open), so that this view too says why in one line instead of Qt's abort."""
    measuring = args.benchmark_frames is not None or args.screenshot is not None
    try:
        items = split_panes(args.compare)
        if measuring:  # scripted runs: a pane that cannot start is bad input, not a banner
            errors = [e for e in parse_panes_lenient(items, args.models_dir)[1] if e]
            if errors:
                raise StudioError(errors[0])
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.benchmark_frames is not None and (args.source is None or args.benchmark_frames < 1):
        print("error: --benchmark-frames N needs N >= 1 and --source 0|PATH", file=sys.stderr)
        return 2
    problem = preflight(args) if preflight is not None else None
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2

    from ..settings_store import APPLICATION, ORGANIZATION, SettingsStore
    from ..theme import apply_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    settings = SettingsStore.ephemeral() if measuring else SettingsStore()
    apply_theme(app, args.theme or settings.theme)
    window = CompareWindow(args.compare, models_dir=args.models_dir, source=args.source, realtime=not args.fast)
    window.resize(*window_size)
    runner = None
    if args.benchmark_frames is not None:
        runner = CompareBenchmarkRun(window, args.benchmark_frames)
    elif args.screenshot is not None:
        runner = CompareScreenshotRun(window, Path(args.screenshot), args.screenshot_after)
    window.show()
    return run_event_loop(app, window, runner)
