"""benchmarks/data_loading.py runs end to end on tiny files and prints its three tables with ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "data_loading.py"


@pytest.mark.slow  # ~15-30 s on 2 shared cores: video generation, re-encoding, every installed peer
def test_data_loading_benchmark_tiny_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH), "--tiny", "--dir", str(tmp_path)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert re.search(r"^\| ssv2_427x240\.webm \| TSN 8 \| [\d.]+ \| [\d.]+ \|", out, re.M), out
    assert re.search(r"^\| k640x360_g250\.mp4 \| dense 8x8 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", out, re.M)  # gains
    assert re.search(r"^\| k340x256_g250\.mp4 prepared \| [\d.]+ \| [\d.]+ \| [\d.]+ \|", out, re.M)  # sidecar
    assert "ours/pyav" in out and "ours gain/pyav gain" in out and "sidecar/demux" in out
    if "skipping torchcodec" not in out:  # data.decoder=torchcodec through our dataset: a column of its own
        assert re.search(r"^\| file \| clips \| ours \| .*\| ours_tc \| .*\| ours/ours_tc \|$", out, re.M), out
