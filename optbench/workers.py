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


def setup_torch(threads: int | None) -> None:
    """Flush denormals (a small net ran 19x slower without it here) and set threads: in
    the main process (runner, cli) and in every pool worker."""
    import torch
    torch.set_flush_denormal(True)
    if threads:
        torch.set_num_threads(threads)


def pool_worker_init(threads: int, parent: int) -> None:
    die_with_parent(parent)            # first, before the seconds of importing torch
    setup_torch(threads)


# -- a local Ray cluster that dies with its driver -----------------------------------------

RAY_MARK = "OPTBENCH_RAY_SESSION"   # in the environment of every process the driver's Ray starts


def reap_with_driver(temp: str):
    """Start a small process that waits for this one (the driver) to exit, however it
    ends, then kills every process of its local Ray and removes Ray's temporary folder.
    A killed driver takes Ray's raylet and GCS with it, but its agents are reparented to
    init and live on, and the folder stays (seen with kill -9).

    Ray's processes are found three ways, since none finds all: the reaper records the
    driver's descendants twice a second while it lives (the agents lose their parent
    when the raylet dies), a mark in the environment they inherit, and files they hold
    open in Ray's folder. Returns a function to call after ray.shutdown(), which sweeps
    at once. Linux only (/proc); elsewhere a no-op."""
    import subprocess
    if not os.path.isdir("/proc/self"):
        return lambda: None
    env = {k: v for k, v in os.environ.items() if k != RAY_MARK}
    reaper = subprocess.Popen([sys.executable, "-c", _REAPER, temp, RAY_MARK, str(os.getpid())],
                              stdin=subprocess.PIPE, env=env,
                              start_new_session=True)   # Ctrl-C to the driver spares it
    os.environ[RAY_MARK] = temp

    def done():
        os.environ.pop(RAY_MARK, None)
        reaper.stdin.close()   # the EOF a dead driver would give
        try:
            reaper.wait(timeout=30)
        except subprocess.TimeoutExpired:   # it goes on sweeping alone; the run is over
            pass
    return done


# The reaper, as a program of its own: it must not import optbench or torch (it starts
# in milliseconds and outlives the driver).
_REAPER = r"""
import os, select, shutil, signal, sys, time
temp, mark, driver = sys.argv[1], (sys.argv[2] + "=" + sys.argv[1]).encode(), int(sys.argv[3])
me = os.getpid()

def stat(pid):
    # (parent, start time) of a process, or None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[19]
    except (OSError, IndexError, ValueError):
        return None

def processes():
    return {int(p): s for p in os.listdir("/proc") if p.isdigit() and int(p) != me and (s := stat(p))}

seen = {}   # pid -> start time of every descendant of the driver seen while it lived
def record():
    table = processes()
    frontier = {driver}
    while frontier:
        frontier = {p for p, (parent, _) in table.items() if parent in frontier and p not in seen}
        seen.update({p: table[p][1] for p in frontier})

def belongs(pid, start):
    if seen.get(pid) == start:
        return True
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if mark in f.read().split(b"\0"):
                return True
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(temp + "/"):
                return True
    except OSError:
        pass
    return False

while True:   # until the driver closes the pipe or dies
    record()
    ready, _, _ = select.select([sys.stdin], [], [], 0.5)
    if ready and not os.read(sys.stdin.fileno(), 1 << 16):
        break
for _ in range(20):   # processes may still be starting; sweep until none is left
    pids = [p for p, (_, start) in processes().items() if p != driver and belongs(p, start)]
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
