"""One line before each long phase of a run: a proxy replicate trained, a null computed.

Code deep in a cell (training/replicates.py, referees/null.py) calls `notice(line)` just
before it starts something that takes seconds to minutes, so a user at a terminal or
reading a CI log sees why nothing else moved. Silent unless someone listens: the runner
listens while it runs a suite in this process (`with listening(print): ...`); library
calls, tests and pool or Ray workers print nothing."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

_SINK: Callable[[str], None] | None = None


def notice(line: str) -> None:
    """Announce a long phase that is about to start (one line, no trailing newline)."""
    if _SINK is not None:
        _SINK(line)


@contextlib.contextmanager
def listening(sink: Callable[[str], None]) -> Iterator[None]:
    """Send notices to `sink` inside the block; the previous listener is restored after."""
    global _SINK
    previous, _SINK = _SINK, sink
    try:
        yield
    finally:
        _SINK = previous
