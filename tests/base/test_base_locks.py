"""The one lock (base/locks.py, filelock): another process holding it refuses a non-blocking ``hold`` and is
named; a holder that dies leaves no stale lock; taking it writes nothing into the lock file."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tanet_lightning.base import locks
from tanet_lightning.base.errors import RunStateError
from tanet_lightning.runs.lifecycle import run_lock

HOLDER = """
import sys, time
from tanet_lightning.base import locks
lock = locks.hold(sys.argv[1])
if sys.argv[2:]:
    lock.claim(sys.argv[2])
else:
    lock.claim()
print("held", flush=True)
time.sleep(120)
"""


def holder(path: Path, *who: str) -> subprocess.Popen:
    """A real second process holding ``path`` (its imports are filelock only: well under a second)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), *who], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held", proc.communicate()
    return proc


def test_a_lock_another_process_holds_is_refused_naming_it_and_freed_when_it_dies(tmp_path):
    path = tmp_path / ".lock"
    proc = holder(path)
    try:
        with pytest.raises(locks.Held) as err:
            locks.hold(path)
        assert err.value.holder == f"pid {proc.pid} on {socket.gethostname()}"
        assert path.read_text() == f"pid {proc.pid} on {socket.gethostname()}\n"  # the refusal wrote nothing
    finally:
        proc.send_signal(signal.SIGKILL)  # dies holding it: nothing is left to clean up
        proc.wait()
    lock = locks.hold(path)
    lock.release()


def test_the_run_lock_refuses_a_second_process_with_the_same_message(tmp_path):
    proc = holder(tmp_path / ".lock")
    try:
        with pytest.raises(RunStateError, match=rf"another process \(pid {proc.pid} on .+\) is writing to the "
                                                rf"run directory {tmp_path}; wait for it"):
            with run_lock(tmp_path):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_taking_the_lock_writes_nothing_and_two_holds_never_share_it(tmp_path):
    path = tmp_path / ".lock"
    path.write_text("pid 1 on elsewhere\n")  # what an earlier holder left: stays until this one claims
    lock = locks.hold(path)
    assert path.read_text() == "pid 1 on elsewhere\n"
    with pytest.raises(locks.Held, match="pid 1 on elsewhere"):  # a second hold, even in this process
        locks.hold(path)
    lock.claim("pid 2")
    assert path.read_text() == "pid 2\n"
    lock.release()
    with locks.exclusive(tmp_path / "new.lock"):
        assert (tmp_path / "new.lock").read_text() == ""  # made empty, unclaimed


def test_a_blocking_hold_waits_for_the_holder(tmp_path):
    path = tmp_path / ".lock"
    proc = holder(path)
    ender = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(1); os.kill({proc.pid}, 15)"])
    try:
        start = time.monotonic()
        with locks.exclusive(path):  # blocking: returns once the holder has ended
            assert proc.wait(timeout=30) == -signal.SIGTERM  # it held the lock until it ended
        assert time.monotonic() - start >= 0.9
    finally:
        proc.kill()
        proc.wait()
        ender.wait()
