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


# -- a local Ray cluster that dies with its driver -----------------------------------------

RAY_MARK = "OPTBENCH_RAY_SESSION"   # in the environment of every process the driver's Ray starts


def reap_with_driver(temp: str):
    """Start a small process that waits for this one (the driver) to exit, however it
    ends, then kills every process of its local Ray and removes Ray's temporary folder.
    A killed driver takes Ray's raylet and GCS with it, but its agents are reparented to
    init and live on, and the folder stays (seen with kill -9).

    Ray's processes are found by a mark in the environment they inherit (their command
    lines are rewritten to "ray::..."); the driver sets it from here on. Returns a
    function to call after ray.shutdown(), which sweeps at once. Linux only (/proc);
    elsewhere a no-op."""
    import subprocess
    if not os.path.isdir("/proc/self"):
        return lambda: None
    env = {k: v for k, v in os.environ.items() if k != RAY_MARK}
    reaper = subprocess.Popen([sys.executable, "-c", _REAPER, temp, RAY_MARK], stdin=subprocess.PIPE,
                              env=env, start_new_session=True)   # Ctrl-C to the driver spares it
    os.environ[RAY_MARK] = temp

    def done():
        os.environ.pop(RAY_MARK, None)
        reaper.stdin.close()   # the EOF a dead driver would give
        reaper.wait(timeout=30)
    return done


# The reaper, as a program of its own: it must not import optbench or torch (it starts
# in milliseconds and outlives the driver).
_REAPER = r"""
import os, shutil, signal, sys, time
temp, mark = sys.argv[1], sys.argv[2].encode() + b"=" + sys.argv[1].encode()
sys.stdin.buffer.read()   # returns when the driver closes the pipe or dies
def marked():
    for p in os.listdir("/proc"):
        if p.isdigit() and int(p) != os.getpid():
            try:
                with open(f"/proc/{p}/environ", "rb") as f:
                    if mark in f.read().split(b"\0"):
                        yield int(p)
            except OSError:
                pass
for _ in range(20):   # processes may still be starting; sweep until none is left
    pids = list(marked())
    if not pids:
        break
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.25)
shutil.rmtree(temp, ignore_errors=True)
"""
