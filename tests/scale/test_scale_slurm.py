"""Sweeps on several processes and on SLURM, run here for real: Hydra multirun + DDP, the submitit
launcher (local executor), the SLURM launcher config, and preemption with a fake `scontrol`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent
SUBMITIT = pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the slurm extra")


TINY_RUN = ["trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
            "callbacks.model_summary=null"]


@pytest.fixture
def train_cmd(tiny_synthetic):
    """`python -m tanet_lightning.train` on the tiny synthetic data (tests/conftest.py), 1 epoch."""

    def cmd(*overrides: str, multirun: bool = False) -> list[str]:
        return [sys.executable, "-m", "tanet_lightning.train", *(["-m"] if multirun else []), *tiny_synthetic,
                *TINY_RUN, *overrides]

    return cmd


def run(cmd: list[str], cwd: Path, data_dir: Path, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TANET_", "SLURM_"))}
    full_env.update(TANET_DATA_DIR=str(data_dir), WANDB_MODE="disabled", PYTHONUNBUFFERED="1",
                    PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **env)
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def sweep_jobs(cwd: Path) -> tuple[list[Path], list[Path]]:
    """(job directories with metrics.json, multirun.yaml files) under the launch directory."""
    root = cwd / "logs" / "train" / "multiruns"
    return sorted(p.parent for p in root.rglob("metrics.json")), sorted(root.rglob("multirun.yaml"))


def test_slurm_launcher_config_sizes_the_allocation(make_cfg, monkeypatch, tmp_path):
    """`hydra/launcher=slurm trainer=ddp`: one task per GPU, partition/account from sbatch's variables,
    the time-limit signal is Lightning's USR1; the sbatch script submitit would submit says so."""

    monkeypatch.setenv("SBATCH_PARTITION", "gpu-long")
    monkeypatch.setenv("SBATCH_ACCOUNT", "vision")
    overrides = ["+experiment=ablation_alpha_beta", "hydra/launcher=slurm", "trainer=ddp"]
    cfg = make_cfg([*overrides, "hydra.launcher.gpus_per_node=4", "hydra.launcher.nodes=2"], tiny=False)
    node = HydraConfig.get().launcher
    launcher = {k: node[k] for k in node if k not in ("submitit_folder", "name")}  # those need hydra.*
    launcher["additional_parameters"] = dict(node.additional_parameters)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["tasks_per_node"] == launcher["gpus_per_node"] == 4 and launcher["nodes"] == 2
    assert (launcher["partition"], launcher["account"]) == ("gpu-long", "vision")
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == -1
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "2")  # what SLURM sets in each task of the job
    assert cfg.trainer.num_nodes == 2
    # the sbatch script, built from these parameters as the launcher builds it (no cluster needed)
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {k if k in base else f"slurm_{k}": v for k, v in launcher.items()
              if k not in ("_target_", "max_num_timeout")}
    fake_bin = tmp_path / "bin"  # submitit's executor looks for srun on PATH; nothing is run here
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    executor.update_parameters(**params)
    script = executor._executor._make_submission_file_text("python -m tanet_lightning.train", "uid")
    for line in ("--signal=USR1@120", "--ntasks-per-node=4", "--gpus-per-node=4", "--nodes=2",
                 "--partition=gpu-long", "--account=vision", "--time=4320"):
        assert f"#SBATCH {line}\n" in script, (line, script)


@pytest.mark.slow  # ~29 s; `make test` runs README's submitit sweep
@pytest.mark.process
def test_submitit_local_two_job_sweep(tmp_path, data_dir, train_cmd):
    """Hydra's submitit launcher (local executor: real separate job processes) runs a 2-job sweep."""
    proc = run(train_cmd("seed=0,1", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                         "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", multirun=True),
               tmp_path, data_dir)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    jobs, multirun_yaml = sweep_jobs(tmp_path)
    assert [j.name.rsplit("__", 1)[-1] for j in jobs] == ["seed-0", "seed-1"], jobs
    assert len(multirun_yaml) == 1 and jobs[0].parent == multirun_yaml[0].parent
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["test/num_videos"] == 8
    assert list(multirun_yaml[0].parent.glob(".submitit/*/*_result.pkl"))  # ran through submitit


@pytest.mark.slow  # 2 jobs x 2 ranks, each rank a fresh interpreter: ~1 min on 2 cores
def test_multirun_with_ddp_completes_each_job_once(tmp_path, data_dir, train_cmd):
    """`-m ... trainer=ddp_cpu trainer.strategy=ddp`: Lightning re-executes the command for rank 1, which
    runs the same sweep; both ranks must share the sweep directory: 2 complete jobs, one multirun.yaml."""
    proc = run(train_cmd("seed=0,1", "trainer=ddp_cpu", "trainer.strategy=ddp", "data.batch_size=4",
                         multirun=True), tmp_path, data_dir)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    jobs, multirun_yaml = sweep_jobs(tmp_path)
    assert len(jobs) == 2 and len(multirun_yaml) == 1, (jobs, multirun_yaml)
    job_dirs = [p for p in multirun_yaml[0].parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert sorted(job_dirs) == jobs  # no half-made directories of a second sweep
    for job in jobs:  # each rank ran the job once: one "run directory" line in each rank's log
        assert (job / "train.log").read_text().count("run directory:") == 1
        assert (job / "train_ddp_process_1.log").read_text().count("run directory:") == 1
    launched = OmegaConf.load(multirun_yaml[0])
    assert launched.hydra.job.name == "train"  # the launching process's, not a rank's re-execution


FAKE_SCONTROL = """#!/bin/sh
# a fake `scontrol`: records the call, then does what a requeue does to the running job: SLURM ends it
# with SIGTERM (and puts it back in the queue)
echo "$@" >> "{log}"
kill -TERM $PPID
"""


@pytest.mark.slow  # three training runs in subprocesses: ~1 min
def test_slurm_requeue_resumes_and_matches_an_uninterrupted_run(tmp_path, data_dir, train_cmd):
    """SIGUSR1 mid-epoch under SLURM: at the end of that step the job saves hpc_ckpt_1.ckpt, records the run
    as requeued, runs `scontrol requeue <job>` (fake, on PATH) and stops: no test, no metrics.json, exit
    138. The requeued job (the same command) resumes from the checkpoint, replays the interrupted epoch's
    order, and ends exit 0 with the uninterrupted run's metrics (val and train included)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol_calls.txt"
    (bin_dir / "scontrol").write_text(FAKE_SCONTROL.format(log=calls))
    (bin_dir / "scontrol").chmod(0o755)
    slurm = dict(SLURM_JOB_ID="4242", SLURM_JOB_NAME="tanet", SLURM_NTASKS="1", SLURM_NTASKS_PER_NODE="1",
                 SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NODELIST="localhost",
                 PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # 24 training videos / 8 = 3 steps an epoch; 2 epochs; deterministic kernels
    cmd = train_cmd("trainer.max_epochs=2", "trainer.deterministic=true",
                    "+callbacks.probe._target_=slurm_probe.PauseForSignal")
    (ref_dir := tmp_path / "uninterrupted").mkdir()
    ref = run(cmd, ref_dir, data_dir, **slurm)
    assert ref.returncode == 0, ref.stderr[-4000:]
    assert not calls.exists()

    (job_dir := tmp_path / "job").mkdir()
    env = {**slurm, "TANET_TEST_PAUSE_AT_STEP": "4"}  # step 4: mid-way through epoch 1 (of 3 steps each)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("TANET_", "SLURM_"))}
    full_env.update(TANET_DATA_DIR=str(data_dir), WANDB_MODE="disabled",
                    PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **env)
    job = subprocess.Popen(cmd, cwd=job_dir, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    runs = job_dir / "logs" / "train" / "runs"
    deadline = time.monotonic() + 300
    while not list(runs.glob("*/paused")) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.poll() is None, job.communicate()[0][-4000:]
    job.send_signal(signal.SIGUSR1)
    next(runs.glob("*/paused")).with_name("signalled").write_text("")  # the probe lets step 4 end
    out = job.communicate(timeout=300)[0]
    assert job.returncode == 138, out[-4000:]  # 128 + SIGUSR1: stopped for the requeue, not finished
    assert calls.read_text().split() == ["requeue", "4242"]
    (run_dir,) = runs.iterdir()
    assert (run_dir / "hpc_ckpt_1.ckpt").is_file() and not (run_dir / "metrics.json").exists()
    assert json.loads((run_dir / "run.json").read_text())["state"] == "requeued"
    assert "Restoring states" not in out  # nothing was tested

    requeued = run(cmd, job_dir, data_dir, **env)  # SLURM starts the same command again
    assert requeued.returncode == 0, requeued.stderr[-4000:]
    assert "hpc_ckpt_1.ckpt" in requeued.stdout + requeued.stderr  # resumed from it
    (ref_run,) = (ref_dir / "logs" / "train" / "runs").iterdir()
    assert ref_run.name == run_dir.name
    want = json.loads((ref_run / "metrics.json").read_text())
    got = json.loads((run_dir / "metrics.json").read_text())
    for key in ("test/top1", "test/top5", "val/top1", "val/top1_best", "val/loss", "train/loss_epoch"):
        assert got[key] == pytest.approx(want[key], abs=1e-6), key
    assert json.loads((run_dir / "run.json").read_text())["state"] == "finished"


@pytest.mark.slow  # 2 DDP ranks, each a fresh interpreter: ~40 s on 2 cores
def test_ddp_processes_started_by_lightning_in_a_one_task_slurm_allocation(tmp_path, data_dir, train_cmd):
    """An interactive SLURM allocation (`srun --pty bash`: one task, SLURM_PROCID=0 in every process started
    from it) running `trainer=ddp_cpu trainer.strategy=ddp`: Lightning starts rank 1 itself (LOCAL_RANK=1).
    Rank 1 must know it is not rank 0 (LOCAL_RANK before SLURM_PROCID, Lightning's rule): it neither takes
    the run lock nor records; the run finishes once, with one run.json, metrics.json and two ranks' logs."""
    slurm = dict(SLURM_JOB_ID="4243", SLURM_JOB_NAME="interactive", SLURM_NTASKS="1", SLURM_PROCID="0",
                 SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NODELIST="localhost")
    proc = run(train_cmd("trainer=ddp_cpu", "trainer.strategy=ddp", "data.batch_size=4"), tmp_path, data_dir,
               timeout=300, **slurm)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "another process" not in proc.stdout + proc.stderr  # rank 1 did not try the run lock
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["state"] == "finished"
    assert json.loads((run_dir / "metrics.json").read_text())["test/num_videos"] == 8  # both ranks' videos
    assert (run_dir / "train.log").read_text().count("run directory:") == 1
    assert (run_dir / "train_ddp_process_1.log").read_text().count("run directory:") == 1
