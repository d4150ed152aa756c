"""A callback for the SLURM tests, loaded by the training subprocess (`+callbacks.probe=...`).

With ``TANET_TEST_PAUSE_AT_STEP=N`` it writes ``paused`` into the run directory when step N starts and
waits there (for at most 2 minutes), so the test can send the requeue signal at a known point in the
middle of an epoch. Without the variable it does nothing: every run uses the same command.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L


class PauseForSignal(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        step = os.environ.get("TANET_TEST_PAUSE_AT_STEP")
        if step is None or trainer.global_step != int(step):
            return
        marker = Path(trainer.default_root_dir) / "paused"
        if marker.exists():  # the requeued run passes this step without waiting
            return
        marker.write_text(f"{os.getpid()}\n")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the signal handler runs (and the job is killed) in here
            time.sleep(0.05)
        raise RuntimeError("no requeue signal arrived within 2 minutes")
