"""When to stop: one wall-clock deadline and one interrupt flag for every step of a command.

A ``--time-limit`` is a wall-clock promise for the whole command (warm start, formulation build,
every solver pass, placement, the evaluator's re-check), and Ctrl-C may come at any moment. Each
step asks the same :class:`StopToken` whether to go on, so the command can always stop in time with
the best plan it knows. Why a flag and not ``KeyboardInterrupt``: an exception raised at an
arbitrary bytecode can land in the middle of building a result and lose it; a flag is read only at
the points where a step can hand back what it has.

Reading the clock here is the only clock dependence of a solve; a search that is not stopped by
the deadline makes the same decisions on a slow machine as on a fast one (work budgets and CP-SAT's
deterministic time, never wall time, bound the searches themselves).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class StopToken:
    """A deadline (``time.perf_counter`` seconds, ``inf`` for none) and an interrupt flag."""

    deadline: float = math.inf
    started: float = field(default_factory=time.perf_counter)
    _interrupt: threading.Event = field(default_factory=threading.Event, repr=False)

    @classmethod
    def after(cls, seconds: float | None, started: float | None = None) -> StopToken:
        """A token that expires ``seconds`` after ``started`` (now by default); ``None``: never."""
        start = time.perf_counter() if started is None else started
        deadline = math.inf if seconds is None or not math.isfinite(seconds) else start + max(0.0, seconds)
        return cls(deadline=deadline, started=start)

    @classmethod
    def within(cls, stop: StopToken | None, seconds: float | None = None) -> StopToken:
        """The token a step runs under: ``stop`` (a fresh one when ``None``), its deadline moved
        up to ``seconds`` from now where that is sooner; ``None`` or infinite ``seconds`` adds none.
        Ctrl-C still reaches the step through ``stop``'s flag."""
        token = stop if stop is not None else cls()
        if seconds is None or not math.isfinite(seconds):
            return token
        return token.share(1.0, seconds)

    def interrupt(self) -> None:
        """Ask every step to stop and hand back what it has (Ctrl-C)."""
        self._interrupt.set()

    @property
    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    @property
    def expired(self) -> bool:
        return time.perf_counter() >= self.deadline

    def should_stop(self) -> bool:
        return self.interrupted or self.expired

    def remaining_s(self) -> float:
        """Seconds left before the deadline (``inf`` without one, 0 once interrupted)."""
        if self.interrupted:
            return 0.0
        return max(0.0, self.deadline - time.perf_counter())

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def share(self, fraction: float, at_most_s: float = math.inf) -> StopToken:
        """A child token for one step: at most ``fraction`` of the time left (and ``at_most_s``),
        sharing this token's interrupt flag so Ctrl-C reaches the step."""
        left = self.deadline - time.perf_counter()
        budget = min(at_most_s, left * fraction) if math.isfinite(left) else at_most_s
        deadline = min(self.deadline, time.perf_counter() + max(0.0, budget))
        return StopToken(deadline=deadline, started=time.perf_counter(), _interrupt=self._interrupt)

    def why(self) -> str | None:
        """Why a step stopped early, in words, or ``None`` if it was not asked to."""
        if self.interrupted:
            return "interrupted (Ctrl-C)"
        if self.expired:
            return "time limit reached"
        return None


def process_started() -> float:
    """When this process started, on the ``time.perf_counter`` clock, so a command's time limit
    covers the interpreter's start and imports (about 0.5 s) too (Linux: ``/proc/self/stat``
    field 22, in clock ticks since boot, against ``/proc/uptime``). Now when the OS does not say,
    or when the process is older than ``FRESH_PROCESS_S`` (a long-lived caller, e.g. a test run
    invoking the command in-process, whose past must not eat the limit)."""
    now = time.perf_counter()
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            start_ticks = float(stat.read().rsplit(")", 1)[1].split()[19])
            up_s = float(uptime.read().split()[0])
        import os

        elapsed = up_s - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - elapsed if 0.0 <= elapsed <= FRESH_PROCESS_S else now


#: a process started at most this long ago is taken to be the command itself [s]
FRESH_PROCESS_S = 5.0


@contextmanager
def sigint_stops(token: StopToken) -> Iterator[StopToken]:
    """While inside, the first Ctrl-C sets ``token``'s interrupt flag instead of raising; a second
    one raises ``KeyboardInterrupt`` as usual (the user insists). Only the main thread can install
    signal handlers, and a SIGINT the process was told to ignore stays ignored; otherwise this does
    nothing."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # (a process started in the background by a shell ignores SIGINT: keep it that way)
        yield token
        return

    def handler(signum: int, frame: object) -> None:
        if token.interrupted:
            raise KeyboardInterrupt
        token.interrupt()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)
