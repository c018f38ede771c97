"""A local Ray cluster dies with its driver: after kill -9 of the driver, no process of
its Ray is left and its temporary folder is gone."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DRIVER = """
import sys, tempfile, time
import ray
from optbench.workers import reap_with_driver
temp = tempfile.mkdtemp(prefix="optbench-ray-")   # as the runner (sockets need a short path)
reap_with_driver(temp)
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=temp)
print(temp, flush=True)
time.sleep(600)
"""


def _descendants(root: int) -> set[int]:
    """Every process below `root`, from each process's parent in /proc/<pid>/stat."""
    parent = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, frontier = set(), {root}
    while frontier:
        frontier = {c for c, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def _alive(pids) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists()
            and (Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")}


def _marked(temp: str) -> list[int]:
    """Processes whose environment carries the driver's Ray mark (read independently of
    the reaper's own search)."""
    mark = f"OPTBENCH_RAY_SESSION={temp}".encode()
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if mark in (p / "environ").read_bytes().split(b"\0"):
                    out.append(int(p.name))
            except OSError:
                pass
    return out


@pytest.mark.skipif(not Path("/proc/self").is_dir() or not __import__("importlib").util.find_spec("ray"),
                    reason="needs /proc and Ray")
def test_a_killed_driver_leaves_no_ray_process_or_folder():
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}   # nothing written to ~/.ray
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        temp = driver.stdout.readline().strip()
        assert temp and Path(temp).is_dir(), driver.stderr.read() if driver.poll() is not None else ""
        assert len(_marked(temp)) >= 2          # Ray's own processes carry the mark
        reaper = {p for p in _descendants(driver.pid)   # the reaper outlives the driver by design
                  if b"OPTBENCH_RAY_SESSION" in Path(f"/proc/{p}/cmdline").read_bytes()}
        ray_tree = _descendants(driver.pid) - reaper
        assert len(ray_tree) >= 2
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.time() + 30
        while (_marked(temp) or _alive(ray_tree) or Path(temp).exists()) and time.time() < deadline:
            time.sleep(0.5)
        assert _marked(temp) == []
        assert _alive(ray_tree) == set()        # by the process tree, not the reaper's own mark
        assert not Path(temp).exists()
    finally:
        driver.kill()
