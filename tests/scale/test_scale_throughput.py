"""benchmarks/throughput.py runs end to end (the CI smoke test; the numbers come from a GPU run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "throughput.py"


@pytest.mark.heavy
def test_throughput_benchmark_tiny_cpu_smoke(tmp_path):
    cmd = [sys.executable, str(BENCH), "--device", "cpu", "--tiny", "--steps", "1", "--warmup", "1",
           "--workers", "0", "1", "--compile", "off", "--num-videos", "4", "--dir", str(tmp_path)]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    found = re.finditer(r"^(C2D|TANet)\s+off\s+(.*)$", out, re.M)
    rows = {m.group(1): [float(x) for x in m.group(2).split()] for m in found}
    assert set(rows) == {"C2D", "TANet"}
    for values in rows.values():  # memory, loader w=0, loader w=1, then the two loader / memory ratios
        assert len(values) == 5 and all(v > 0 for v in values)
    assert re.search(r"compile off\s+memory: [\d.]+\s+loader w=0: [\d.]+\s+loader w=1: [\d.]+", out)
    assert len(list(tmp_path.glob("*.mp4"))) == 4  # the generated Kinetics-like (here: small) videos
