"""benchmarks/streaming.py runs end to end on a few tiny videos and prints its four tables with ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "streaming.py"
NUM = r"[\d.]+"


@pytest.mark.slow  # ~30 s on 2 shared cores: two prepares, a moto server process, 3 loader epochs twice
def test_streaming_benchmark_tiny_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--tiny", "--dir", str(tmp_path)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    row = rf"\| {NUM} \| {NUM} \| {NUM} \| {NUM} \|$"  # wall s, CPU s and both over prepare to files
    assert re.search(r"^\| prepare shards=true \(files, then packed\) " + row, out, re.M), out
    assert re.search(rf"^\| local shards \| {NUM} \| {NUM} \|$", out, re.M), out  # clips/CPU-s, / files
    assert re.search(rf"^\| S3, epoch 2, same cache \(warm\) \| {NUM} \| {NUM} \| {NUM} \|$", out, re.M), out
    assert re.search(rf"^warm / cold: {NUM} \(CPU\)", out, re.M), out
    rss = re.findall(rf"^\| (local shards|S3) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| ({NUM}) \|$", out, re.M)
    assert [r[0] for r in rss] == ["local shards", "S3"], out
    assert all(float(r[5]) > 0 for r in rss)
