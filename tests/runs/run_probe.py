"""Callbacks for the run-directory and signal tests, loaded by the training subprocess
(``+callbacks.probe._target_=run_probe.NAME``). Without their environment variable they do nothing.

- ``PauseInTest`` (``TANET_TEST_PAUSE=1``): writes ``paused`` into the run directory when testing starts
  and waits there (at most 2 minutes), so the test can stop the run in its test phase.
- ``PauseInLaterJob`` (``TANET_TEST_PAUSE_SWEEP=<sweep dir>``): like ``PauseInTest``, but only in a sweep's job
  that starts testing once another job of the sweep has finished (its ``metrics.json`` exists): the sweep
  test stops a sweep inside its second job, however late the test's own process gets the CPU.
- ``SlowCheckpointWrite`` (``TANET_TEST_SLOW_SAVE=1``): the run's first checkpoint write (the first
  epoch's ``epoch_000.ckpt``) writes ``saving`` into the run directory and waits inside the write until the
  test, having sent its signal, writes ``signalled`` next to it (at most 2 minutes), then lets the write
  finish: a signal that lands in a checkpoint write, every time.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L


class PauseInTest(L.Callback):
    def on_test_start(self, trainer, pl_module):
        if not os.environ.get("TANET_TEST_PAUSE"):
            return
        (Path(trainer.default_root_dir) / "paused").write_text(f"{os.getpid()}\n")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the SIGTERM handler raises in here
            time.sleep(0.05)
        raise RuntimeError("no signal arrived within 2 minutes")


class PauseInLaterJob(L.Callback):
    def on_test_start(self, trainer, pl_module):
        sweep = os.environ.get("TANET_TEST_PAUSE_SWEEP")
        if not sweep or not list(Path(sweep).glob("*/metrics.json")):
            return
        (Path(trainer.default_root_dir) / "paused").write_text(f"{os.getpid()}\n")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the signal's handler raises in here
            time.sleep(0.05)
        raise RuntimeError("no signal arrived within 2 minutes")


class SlowCheckpointWrite(L.Callback):
    def on_save_checkpoint(self, trainer, pl_module, checkpoint):  # inside Trainer.save_checkpoint
        marker = Path(trainer.default_root_dir) / "saving"
        if not os.environ.get("TANET_TEST_SLOW_SAVE") or marker.exists():  # the resumed run saves at once
            return
        marker.write_text(f"{os.getpid()}\n")
        deadline = time.monotonic() + 120
        while not marker.with_name("signalled").exists():  # an immediate stop raises in here
            if time.monotonic() > deadline:
                raise RuntimeError("no signal arrived within 2 minutes")
            time.sleep(0.05)
