"""A callback for the SLURM tests, loaded by the training subprocess (`+callbacks.probe=...`).

With ``TANET_TEST_PAUSE_AT_STEP=N`` it writes ``paused`` into the run directory when step N starts and
waits there (for at most 2 minutes) until the test writes ``signalled`` next to it, so the test can send
the requeue signal at a known point in the middle of an epoch (the run stops at the end of that step).
Without the variable it does nothing: every run uses the same command.
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
        while not marker.with_name("signalled").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("no requeue signal arrived within 2 minutes")
            time.sleep(0.05)
