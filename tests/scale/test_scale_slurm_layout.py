"""The SLURM layout guard (Lightning#20391): a job whose srun variables and trainer.devices / num_nodes do not
describe the same processes is refused before any work, naming the #SBATCH / hydra.launcher setting."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

import launcher as launched
from tanet_lightning.base.errors import ConfigError
from tanet_lightning.config.checks import check_slurm_layout
from tinyconf import TINY_RUN, TINY_SYNTHETIC

HERE = Path(__file__).resolve().parent
DDP_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.precision=32-true"]


def srun_env(ntasks: int, nodes: int | None = None, per_node: int | None = None, **more: str) -> dict[str, str]:
    """What srun sets in every task (for task 0): SLURM_NTASKS_PER_NODE only with --ntasks-per-node."""
    env = dict(SLURM_JOB_ID="4242", SLURM_JOB_NAME="tanet", SLURM_NTASKS=str(ntasks), SLURM_PROCID="0",
               SLURM_LOCALID="0", SLURM_NODEID="0", SLURM_NODELIST="localhost")
    env.update(more)
    if nodes is not None:
        env.update(SLURM_JOB_NUM_NODES=str(nodes), SLURM_NNODES=str(nodes))
    if per_node is not None:
        env["SLURM_NTASKS_PER_NODE"] = str(per_node)
    return env


@pytest.mark.parametrize("env, trainer", [
    ({}, []),  # not under SLURM
    (srun_env(1, 1, 1), []),  # the usual one-task job (tests/scale/test_scale_slurm.py's)
    (srun_env(1), []),  # srun without --nodes / --ntasks-per-node
    (srun_env(8, 2, 4), DDP_CPU + ["trainer.devices=4", "trainer.num_nodes=2"]),
    (srun_env(4, 1, 4), DDP_CPU + ["trainer.devices=[0,1,2,3]"]),
    (srun_env(1, 1, 2, SLURM_JOB_NAME="interactive"), []),  # Lightning ignores SLURM in such jobs
], ids=["no-slurm", "one-task", "bare-srun", "2x4", "device-list", "interactive"])
def test_agreeing_layouts_pass(make_cfg, monkeypatch, env, trainer):
    cfg = make_cfg(trainer)
    check_slurm_layout(cfg.trainer, env)


@pytest.mark.parametrize("env, trainer, words", [
    # Lightning#20391: --ntasks=1 --ntasks-per-node=2 on one node: Lightning counts 2 processes, 1 starts
    (srun_env(1, 1, 2), ["trainer.devices=2"], ["SLURM_NTASKS=1", "SLURM_NTASKS_PER_NODE=2", "Lightning#20391",
                                                "#SBATCH --ntasks-per-node=G", "hydra.launcher.tasks_per_node"]),
    (srun_env(8, 2, 4), ["trainer.devices=4"], ["trainer.num_nodes=1", "set trainer.num_nodes=2",
                                                "#SBATCH --nodes=1", "hydra.launcher.nodes=1"]),
    (srun_env(4, 1, 4), ["trainer.devices=2"], ["trainer.devices=2", "starts 4 tasks per node",
                                                "set trainer.devices=4", "#SBATCH --ntasks-per-node=2",
                                                "hydra.launcher.gpus_per_node=2"]),
    (srun_env(2, 1), [], ["trainer.devices=1", "set trainer.devices=2"]),  # --ntasks=2, devices=1
    (srun_env(3, 2), DDP_CPU + ["trainer.num_nodes=2"], ["not the same number on every node", "--ntasks-per-node"]),
], ids=["ntasks-below-per-node", "nodes", "devices", "ntasks-only", "uneven"])
def test_disagreeing_layouts_are_refused(make_cfg, env, trainer, words):
    cfg = make_cfg(trainer)
    with pytest.raises(ConfigError) as e:
        check_slurm_layout(cfg.trainer, env)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_trainer_ddp_reads_the_node_count_srun_sets(make_cfg, monkeypatch):
    """trainer=ddp takes num_nodes from SLURM_JOB_NUM_NODES: a 2-node job passes the node check."""
    env = srun_env(2, 2, 1)
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "2")
    cfg = make_cfg(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1"])
    assert cfg.trainer.num_nodes == 2
    check_slurm_layout(cfg.trainer, env)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_devices_minus_one_counts_the_visible_gpus(make_cfg):
    n = torch.cuda.device_count()
    cfg = make_cfg(["trainer=ddp"])  # devices=-1: every visible GPU
    check_slurm_layout(cfg.trainer, srun_env(n, 1, n))
    with pytest.raises(ConfigError, match=f"is {n} device"):
        check_slurm_layout(cfg.trainer, srun_env(n + 1, 1, n + 1))


@pytest.mark.process
def test_train_refuses_the_20391_layout_before_any_work(tmp_path, data_dir, launcher):
    """`python -m tanet_lightning.train` in a task of `#SBATCH --ntasks=1 --ntasks-per-node=2`: exit 2, one
    message naming the setting, no traceback, nothing in the run directory but Hydra's log of the refusal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANET_", "SLURM_"))}
    env.update(TANET_DATA_DIR=str(data_dir), WANDB_MODE="disabled", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **srun_env(1, 1, 2))
    proc = launched.run(launcher, [sys.executable, "-m", "tanet_lightning.train", *TINY_SYNTHETIC, *TINY_RUN,
                                   "trainer.devices=2"], tmp_path, env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 2, log[-3000:]
    assert "Lightning#20391" in log and "#SBATCH --ntasks-per-node" in log and "Traceback" not in log
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert [p.name for p in run_dir.iterdir()] == ["train.log"]  # no run.json, .hydra, checkpoints
