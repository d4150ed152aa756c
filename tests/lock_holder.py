"""A second process holding a run directory's lock (runs/lifecycle.py ``run_lock``), for the tests of what
a refused process does: ``python -m lock_holder DIR MARKER`` claims DIR, writes MARKER, sleeps until killed."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import launcher as launched
from tanet_lightning.runs.lifecycle import run_lock

HERE = Path(__file__).resolve().parent


def hold(launcher: launched.Launcher | None, directory: Path, cwd: Path):
    """Start the holder (forked from the preloaded launcher: no 4 s of imports) and return it once it holds
    ``directory``; the caller kills it."""
    marker = cwd / f".held-{directory.name}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = launched.popen(launcher, [sys.executable, "-m", "lock_holder", str(directory), str(marker)], cwd, env)
    deadline = time.monotonic() + 120
    while not marker.is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    return proc


if __name__ == "__main__":
    with run_lock(Path(sys.argv[1])) as claim:
        claim()
        Path(sys.argv[2]).touch()
        time.sleep(300)
