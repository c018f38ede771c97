"""Process-pool workers that die with their parent.

This module imports nothing heavy: a spawned worker unpickles its initializer from here
within a fraction of a second, so the guard is in place before the worker spends seconds
importing torch, and a worker whose parent is gone never starts a cell."""
from __future__ import annotations

import os
import sys
import time


def die_with_parent(parent: int) -> None:
    """Make this worker process exit when its parent `parent` dies (kill -9, the OOM
    killer), so no orphan goes on computing and writing cells. Linux: the kernel sends
    SIGKILL at once (prctl PR_SET_PDEATHSIG); elsewhere, and as a backstop, a thread
    notices the parent is gone within a second. The parent passes its own pid: if it
    died while this worker was still starting, os.getppid() is already another process."""
    import signal
    import threading
    if os.getppid() != parent:
        os._exit(1)
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:   # the parent died before prctl took effect
            os._exit(1)

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="optbench-parent-watch").start()


def pool_worker_init(threads: int, parent: int) -> None:
    die_with_parent(parent)            # first, before the seconds of importing torch
    from optbench.runner import setup_torch
    setup_torch(threads)
