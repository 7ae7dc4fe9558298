"""Builds ONNX sessions in the background so switching models never freezes the window.

Each request gets a generation number; only the newest finished request is delivered, so
pressing 1-2-3 quickly ends on model 3 without installing 1 and 2 on the way. The previous
Segmenter keeps serving frames until the new one is ready.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from engine.errors import StudioError
from engine.run.segmenter import Segmenter


class ModelLoader:
    def __init__(self, models_dir: Path | None,
                 on_ready: Callable[[Segmenter], None],
                 on_error: Callable[[str, str], None]):
        self.models_dir = models_dir
        self._on_ready, self._on_error = on_ready, on_error
        self._lock = threading.Lock()
        self._generation = 0
        self._threads: list[threading.Thread] = []
        self.closed = False

    def request(self, name: str) -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(target=self._build, args=(name, generation),
                                      name=f"studio-model-{name}", daemon=True)
            self._threads.append(thread)
        thread.start()

    def _is_current(self, generation: int) -> bool:
        with self._lock:
            return generation == self._generation and not self.closed

    def _build(self, name: str, generation: int) -> None:
        try:
            segmenter = Segmenter.load(name, self.models_dir)
        except StudioError as exc:
            if self._is_current(generation):
                self._on_error(name, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a broken file must not end the app
            if self._is_current(generation):
                self._on_error(name, f"cannot load model {name!r}: {exc}")
            return
        if self._is_current(generation):
            self._on_ready(segmenter)

    @property
    def busy(self) -> bool:
        with self._lock:
            return any(t.is_alive() for t in self._threads)

    def close(self, timeout: float) -> bool:
        """Stop delivering results; wait up to ``timeout`` for builds in progress."""
        with self._lock:
            self.closed = True
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)
