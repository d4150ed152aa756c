"""A callback for the run-directory tests, loaded by the training subprocess (``+callbacks.probe=...``).

With ``TANET_TEST_PAUSE=1`` it writes ``paused`` into the run directory when testing starts and waits
there (at most 2 minutes), so the test can stop the run in its test phase. Without it: nothing.
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
