"""benchmarks/main_job.py (where the main job's time goes) runs end to end on a tiny job."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinyconf import TINY_SYNTHETIC

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "main_job.py"


@pytest.mark.slow  # ~35 s on 2 shared cores
def test_main_job_benchmark_tiny_smoke(tmp_path):
    cmd = [sys.executable, str(BENCH), *TINY_SYNTHETIC, "trainer.max_epochs=3"]
    env = {**os.environ, "WANDB_MODE": "disabled", "TANET_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    epoch = float(re.search(r"one epoch: 3 batches of 8 clips, ([\d.]+) s", out).group(1))
    parts = [float(re.search(rf"^  {name}.*?\s(-?[\d.]+) s", out, re.M).group(1))
             for name in ("training steps", "waiting for the loader", "validation", "checkpoints, logging, hooks")]
    # the rest is the epoch minus the timed parts: negative would mean the timer counted a span twice
    assert parts[0] > 0 and all(p >= 0 for p in parts) and sum(parts[:3]) <= epoch + 0.1
    assert re.search(r"TANet/C2D [\d.]+x", out) and re.search(r"unfused/fused [\d.]+x", out)
    assert re.search(r"estimate of the main job \(3 epochs", out)
    assert not (tmp_path / "logs").exists()  # the measured epoch ran in a temporary run directory
