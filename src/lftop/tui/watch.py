"""File events (watchdog: inotify, FSEvents, ...) that wake the runs feed the moment a run's files change.

Polling at the refresh interval goes on underneath: where no events come (NFS, watchdog missing, inotify
limits reached), the screen is as fresh as the interval.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lftop.runs.rundir import UnsafeHome, make_runs_root

QUICK = ("training.log", "trainer_log.jsonl")  # the selected run's log and loss: a follow-only poll
FULL = ("state", "events.jsonl", "run.json", "queue")  # a run's state: a poll of every run


class RunsWatch:
    """Watches the runs folder (recursively) and the selected run's output_dir; calls `wake(full)`."""

    def __init__(self, runs_root: Path, wake: Callable[[bool], None]):
        self.runs_root, self.wake = runs_root, wake
        self._observer = None
        self._output = None  # (path, watch handle) of the selected run's output_dir
        try:
            from watchdog.events import (
                FileCreatedEvent,
                FileDeletedEvent,
                FileModifiedEvent,
                FileMovedEvent,
                FileSystemEventHandler,
            )
            from watchdog.observers import Observer
        except ImportError:
            return
        watch = self
        # writes, atomic replaces, new and removed files: opens and closes are not asked of the kernel (a logging
        # step's open, write and close were three events through watchdog's threads, two of them for nothing)
        self._kinds = [FileModifiedEvent, FileMovedEvent, FileCreatedEvent, FileDeletedEvent]

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                name = Path(event.dest_path or event.src_path).name if event.event_type == "moved" \
                    else Path(event.src_path).name
                if name in FULL:
                    watch.wake(True)
                elif name in QUICK:
                    watch.wake(False)

        self._handler = Handler()
        try:
            make_runs_root(runs_root.parent)  # private (or sticky in a shared home), as lftop creates it anywhere
            observer = Observer()
            observer.schedule(self._handler, str(runs_root), recursive=True, event_filter=self._kinds)
            observer.daemon = True
            observer.start()
            self._observer = observer
        except (OSError, UnsafeHome):  # e.g. inotify watches exhausted: polling alone
            self._observer = None

    def follow(self, output_dir: str | None) -> None:
        """Watch the selected run's output_dir too (trainer_log.jsonl); from the feed's thread."""
        if self._observer is None or (self._output and self._output[0] == output_dir):
            return
        if self._output:
            self._observer.unschedule(self._output[1])
            self._output = None
        if output_dir and Path(output_dir).is_dir():
            try:
                self._output = (output_dir, self._observer.schedule(self._handler, output_dir, event_filter=self._kinds))
            except OSError:
                pass

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
