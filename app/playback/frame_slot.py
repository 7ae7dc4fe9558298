"""A one-frame mailbox between the reader and the inference thread (latest-frame semantics).

A new frame replaces an unread one, so inference always works on the newest frame and
nothing queues up behind a slow model; the replaced frame is reported as dropped.
"""
from __future__ import annotations

import threading
from typing import Any


class LatestSlot:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._poked = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when it replaced an item nobody took (a dropped frame)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify_all()
            return replaced

    def take(self, timeout: float) -> tuple[Any, bool]:
        """Wait up to ``timeout`` for an item or a poke; returns (item or None, poked)."""
        with self._cond:
            if self._item is None and not self._poked:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            poked, self._poked = self._poked, False
            self._cond.notify_all()
            return item, poked

    def poke(self) -> None:
        """Wake the consumer without a frame (settings changed, stop requested)."""
        with self._cond:
            self._poked = True
            self._cond.notify_all()

    def wait_empty(self, timeout: float) -> bool:
        """For as-fast-as-possible playback: wait until the consumer took the last item."""
        with self._cond:
            if self._item is not None:
                self._cond.wait(timeout)
            return self._item is None

    def clear(self) -> None:
        with self._cond:
            self._item = None
            self._cond.notify_all()
