"""benchmarks/gpu_check.py: `--cpu-smoke` runs every section's code on tiny shapes and writes the report the GPU
run writes (gpu_check.json + gpu_check.md, every number labelled); without CUDA and without the flag it
refuses with exit 2 and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "gpu_check.py"
SECTIONS = ["gpu_tests", "train_throughput", "tam_vs_reference", "loader_feed", "decode", "ddp_job"]
LABELS = ["device", "torch", "cuda", "driver"]


def gpu_check(out: Path, *args: str, timeout: float = 900, **env_vars: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANET_")}
    env.update(WANDB_MODE="disabled", **env_vars)
    return subprocess.run([sys.executable, str(BENCH), "--out", str(out), *args], cwd=out.parent, env=env,
                          capture_output=True, text=True, timeout=timeout)


def check_report(out: Path, ran: list[str]) -> dict:
    r = json.loads((out / "gpu_check.json").read_text())
    md = (out / "gpu_check.md").read_text()
    assert r["mode"] == "cpu-smoke" and r["ok"] is True
    assert all(r["labels"][k] for k in LABELS) and r["labels"]["torch"] == torch.__version__
    assert list(r["sections"]) == SECTIONS
    assert md.startswith("# GPU check (cpu-smoke): ok")
    for name, s in r["sections"].items():
        assert s["labels"] == r["labels"] and s["budget_s"] > 0 and s["columns"], name
        assert f"## {name}: " in md, name
        if name not in ran:
            assert s["status"] == "skipped" and s["reason"] == "--skip", (name, s["status"])
            continue
        assert s["status"] == "ok", (name, s["status"], s["reason"], s["traceback"])
        assert s["rows"] and all(set(row) <= set(s["columns"]) for row in s["rows"]), (name, s["rows"])
        assert "| " + " | ".join(s["columns"]) + " |" in md, name
    # every line above a table names what its numbers were measured on
    assert md.count(f"torch {torch.__version__} · CUDA ") == 1 + len(SECTIONS)
    return r["sections"]


def check_measurements(sections: dict) -> None:
    if sections["train_throughput"]["status"] == "ok":
        rows = sections["train_throughput"]["rows"]
        assert [row["setting"] for row in rows] == ["fp32", "bf16", "bf16+channels_last", "bf16+compile"]
        for row in rows:
            assert row["TANet-R18 clips/s"] > 0 and row["C2D-R18 clips/s"] > 0 and row["TANet/C2D"] > 0, row
    tam = sections["tam_vs_reference"]["rows"]
    assert [row["stage"] for row in tam] == ["res2", "res3", "res4", "res5"]
    assert all(row["ours ms"] > 0 and row["reference ms"] > 0 and float(row["max |diff|"]) < 1e-3 for row in tam)
    feeds = {(row["videos"], row["feed"]): row for row in sections["loader_feed"]["rows"]}
    assert set(feeds) == {("-", "memory"), ("raw", "loader w=1"), ("prepared", "loader w=1")}
    assert all(row["clips/s"] > 0 and row["loader/memory"] > 0 for row in feeds.values())
    decoded = {(row["videos"], row["decoder"], row["device"]): row for row in sections["decode"]["rows"]}
    assert len(decoded) == 6 and decoded["raw", "pyav", "CPU"]["clips/s"] > 0
    assert decoded["prepared", "pyav", "CPU"]["clips/s"] > 0
    assert "needs a CUDA GPU" in decoded["raw", "torchcodec", "NVDEC"]["note"]  # no GPU here: said, not failed


@pytest.mark.heavy
def test_cpu_smoke_writes_every_section_of_the_report(tmp_path):
    """The fast variant (in `make test`): the measured sections on tiny shapes; the pytest run and the
    training job (tens of seconds of imports) are the slow test's."""
    out = tmp_path / "report"
    proc = gpu_check(out, "--cpu-smoke", "--skip", "gpu_tests", "ddp_job")
    assert proc.returncode == 0, proc.stderr[-4000:]
    sections = check_report(out, [s for s in SECTIONS if s not in ("gpu_tests", "ddp_job")])
    check_measurements(sections)
    assert "# GPU check (cpu-smoke): ok" in proc.stdout  # the tables are printed too


@pytest.mark.slow  # the nested pytest run of the gpu tests and a 2-process ddp_cpu training job: minutes
def test_cpu_smoke_runs_the_gpu_tests_and_a_ddp_job(tmp_path):
    out = tmp_path / "report"
    proc = gpu_check(out, "--cpu-smoke")
    assert proc.returncode == 0, proc.stderr[-4000:]
    sections = check_report(out, SECTIONS)
    check_measurements(sections)
    tests = sections["gpu_tests"]["rows"]
    names = " ".join(row["test"] for row in tests)
    assert "test_nvdec_frames_land_on_the_gpu" in names and "test_bf16_autocast_tanet_train_step" in names
    assert all(row["outcome"] == "skipped" and "GPU" in row["message"] for row in tests)  # none here
    (job,) = sections["ddp_job"]["rows"]
    assert job["exit status"] == 0 and "trainer=ddp_cpu" in job["command"]


@pytest.mark.heavy
@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: the check would run")
def test_without_cuda_it_refuses_with_exit_2(tmp_path):
    out = tmp_path / "report"
    proc = gpu_check(out, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "no CUDA GPU is visible here" in proc.stderr and "--cpu-smoke" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()  # refused before any work


@pytest.mark.slow  # ~19 s: the ddp job starts its interpreters before it fails
def test_a_failed_job_fails_the_check(tmp_path):
    """The ddp job cannot write its data (a data directory that cannot exist): its exit status is in the
    report, the section failed, the check exits 1 and still writes the report."""
    out = tmp_path / "report"
    others = [s for s in SECTIONS if s != "ddp_job"]
    proc = gpu_check(out, "--cpu-smoke", "--skip", *others, TANET_DATA_DIR="/proc/no/such/dir")
    assert proc.returncode == 1, proc.stderr[-4000:]
    r = json.loads((out / "gpu_check.json").read_text())
    job = r["sections"]["ddp_job"]
    assert r["ok"] is False and job["status"] == "failed" and "exit status" in job["reason"]
    assert job["rows"][0]["exit status"] not in (0, None)
    assert (out / "gpu_check.md").read_text().startswith("# GPU check (cpu-smoke): FAILED")
