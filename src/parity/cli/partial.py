"""Writing a result file atomically: into ``<out>.partial-<pid>``, renamed into place when complete.

SIGINT and SIGTERM remove the partial file before the process ends; after a SIGKILL (which no
process can catch) the next run removes partial files of ``<out>`` whose writer is gone.
"""

from __future__ import annotations

import glob
import os
import signal
from types import FrameType, TracebackType
from typing import Any, Self

from parity.errors import ParityError

_SUFFIX = ".partial-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(out: str) -> list[str]:
    """Partial files of ``out`` left by writers that no longer run (killed with SIGKILL)."""
    removed = []
    for path in glob.glob(glob.escape(out) + _SUFFIX + "*"):
        pid = path.rsplit(_SUFFIX, 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                os.remove(path)
                removed.append(path)
            except FileNotFoundError:
                pass
    return removed


class PartialFile:
    def __init__(self, out: str) -> None:
        self.out = out
        self.path = f"{out}{_SUFFIX}{os.getpid()}"
        self._previous: dict[int, Any] = {}
        self._aborted = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._aborted = True
        self._remove()
        previous = self._previous.get(signum)
        signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # end as the signal would have ended it (if its handler ends it)

    def _remove(self) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> Self:
        remove_stale(self.out)
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue  # an ignored signal (a background job's SIGINT) stays ignored
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if kind is None and not self._aborted:
                os.replace(self.path, self.out)
            else:
                self._remove()
                if kind is None:
                    raise ParityError(f"writing {self.out} was interrupted; nothing was written")
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
