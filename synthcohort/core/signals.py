"""SIGTERM and SIGINT as an exception (``SystemExit(128 + signal)``), so that the work under way
unwinds through its ``finally`` and ``except`` blocks and can record how it ended: a training run
marks its model ``interrupted`` at its last checkpoint instead of dying mid-record. Steps that
must happen together (a checkpoint's rename and the step it records as saved) hold the signal back
with :func:`signals_deferred`."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HANDLED = (signal.SIGTERM, signal.SIGINT)


def _raise(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def _handled_by(handler: Callable[[int, object], None]) -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT go to ``handler``; the handlers in place before come
    back after it. Only the main thread can install handlers; elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield
    finally:
        for s, before in previous.items():  # None: a handler not installed from Python
            signal.signal(s, signal.SIG_DFL if before is None else before)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise ``SystemExit(128 + n)`` (143, 130): the exit
    status a shell reports for a process killed by that signal."""
    with _handled_by(_raise):
        yield


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT wait; on leaving it, each one that came is delivered to
    the handler that was in place (``SystemExit`` under :func:`signals_raise`, death by default).

    Without it a signal between a checkpoint's rename and ``saved_step = step`` left a record that
    named the previous checkpoint's step beside the new file's hash, and a resume went past the
    steps asked for."""
    pending: list[int] = []
    try:
        with _handled_by(lambda signum, frame: pending.append(signum)):
            yield
    finally:
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)  # runs the restored Python handler before returning


def signal_name(exit_code: object) -> str | None:
    """``SIGTERM`` for 143 and so on: the signal behind an exit status from :func:`signals_raise`."""
    if isinstance(exit_code, int) and exit_code > 128:
        try:
            return signal.Signals(exit_code - 128).name
        except ValueError:
            return None
    return None
