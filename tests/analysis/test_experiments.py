"""Paper experiments: every file composes, its sweep expands to the right jobs, one sweep runs end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from tanet_lightning.analysis.report import collect, group_rows, report
from tanet_lightning.config import config_dir

SWEEPS = {  # experiment -> (number of jobs, swept key, expected values)
    "ablation_alpha_beta": (5, "model.tam", None),
    "ablation_kernel": (4, "model.tam.kernel_size", {"3", "5"}),
    "temporal_modules": (12, "model/temporal", None),
    "backbones": (10, "+model/arch", None),
    "ablation_position": (4, "model.position", {"a", "b", "c", "d"}),
    "ablation_stages": (4, "model.stages", None),
}
RECIPES = ["k400_tanet_r50_8f", "k400_tanet_r50_16f", "sthv1_tanet_r50_8f", "sthv1_tanet_r50_16f",
           "sthv2_tanet_r50_8f", "sthv2_tanet_r50_16f"]


def sweep_jobs(cfg, cli: list[str] = ()) -> list[list[str]]:
    """What Hydra's basic sweeper will launch: config params first, then the command line (which wins)."""
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    parsed = OverridesParser.create().parse_overrides([*params, *cli])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def test_every_experiment_file_is_covered():
    files = {p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml")}
    assert files == set(SWEEPS) | set(RECIPES) | {"finetune"}  # finetune: tests/pretrained


@pytest.mark.parametrize("name", list(SWEEPS))
def test_sweep_expands_to_the_paper_rows(make_cfg, name):
    cfg = compose_hydra(make_cfg, name)
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.experiment_name == name
    jobs = sweep_jobs(cfg)
    n, key, values = SWEEPS[name]
    assert len(jobs) == n and len({tuple(j) for j in jobs}) == n
    if values:
        assert {o.split("=", 1)[1] for j in jobs for o in j if o.startswith(key + "=")} == values
    for job in jobs:  # every job composes, and its model builds (on the meta device: no weights)
        job_cfg = make_cfg([f"+experiment={name}", *job, "model.pretrained=false"], tiny=False)
        assert job_cfg.data.num_frames == job_cfg.model.num_frames
        if name == "ablation_alpha_beta":
            assert job_cfg.model.tam.kernel_size == 3


def test_sweep_values_match_the_paper(make_cfg):
    jobs = sweep_jobs(compose_hydra(make_cfg, "ablation_alpha_beta"))
    settings = {o.split("=", 1)[1] for j in jobs for o in j}
    assert settings == {"{alpha:1,beta:4}", "{alpha:2,beta:4}", "{alpha:4,beta:4}", "{alpha:2,beta:2}",
                        "{alpha:2,beta:8}"}
    stages = sweep_jobs(compose_hydra(make_cfg, "ablation_stages"))
    assert [j[0] for j in stages] == ["model.stages=[res5]", "model.stages=[res4,res5]",
                                       "model.stages=[res3,res4,res5]", "model.stages=[res2,res3,res4,res5]"]


def test_command_line_value_pins_a_swept_key(make_cfg):
    cfg = compose_hydra(make_cfg, "ablation_kernel")
    jobs = sweep_jobs(cfg, ["data.num_frames=16"])
    assert len(jobs) == 2 and all("data.num_frames=16" in j for j in jobs)


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_compose_with_the_paper_protocol(make_cfg, name):
    cfg = make_cfg([f"+experiment={name}", "model.pretrained=false"], tiny=False)
    frames = 16 if name.endswith("16f") else 8
    assert cfg.data.num_frames == frames == cfg.model.num_frames
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.optimizer.lr == 0.01
    assert cfg.model.backbone == "resnet50.tv_in1k" and cfg.model.temporal.name == "tam"
    if name.startswith("k400"):
        assert cfg.trainer.max_epochs == 100 and list(cfg.scheduler.milestones) == [50, 75, 90]
        assert cfg.data.sampler == "dense" and cfg.data.test_views == ("10x3" if frames == 8 else "4x3")
        assert cfg.optimizer.weight_decay == 1e-4
    else:
        assert cfg.trainer.max_epochs == 50 and list(cfg.scheduler.milestones) == [30, 40, 45]
        assert cfg.data.sampler == "uniform" and cfg.optimizer.weight_decay == 1e-3
        assert cfg.data.test_views == ("1x1" if name.startswith("sthv1") else "2x3")


def compose_hydra(make_cfg, name: str):
    """The experiment's config with its hydra node (make_cfg drops it after setting it for resolvers)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    make_cfg([f"+experiment={name}"], tiny=False)  # validates the plain composition too
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=[f"+experiment={name}"], return_hydra_config=True)


def test_ablation_sweep_runs_end_to_end_and_reports(tmp_path, data_dir, tiny_synthetic):
    """`+experiment=ablation_position +preset=synthetic` in a subprocess: 4 real jobs, then the report.

    The preset's ResNet-18 has basic blocks, where position c is not defined: that job fails with a
    clear error, is recorded as failed, the sweep goes on (a partial sweep for the report) and exits 1."""
    cmd = [sys.executable, "-m", "tanet_lightning.train", "+experiment=ablation_position", "+preset=synthetic",
           "logger=csv", *tiny_synthetic,
           "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
           "trainer.enable_progress_bar=false", "callbacks.model_summary=null", "data.test_views=1x1"]
    env = {**os.environ, "WANDB_MODE": "disabled", "TANET_DATA_DIR": str(data_dir)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 job(s) of" in proc.stdout + proc.stderr
    sweeps = list((tmp_path / "logs" / "train" / "multiruns" / "ablation_position").glob("*"))
    assert len(sweeps) == 1
    jobs = collect(sweeps[0])
    status = {j.overrides["model.position"]: j.status for j in jobs}
    assert status == {"a": "done", "b": "done", "c": "failed", "d": "done"}
    failed = next(j for j in jobs if j.status == "failed")
    assert "position 'c' is not defined for BasicBlock" in (failed.path / "FAILED").read_text()
    rows = group_rows(jobs, "ablation_position")
    assert [r.setting for r in rows] == ["TANet-a", "TANet-b", "TANet-c", "TANet-d"]
    assert rows[2].status.startswith("0/1 done, 1 failed (") and "position 'c' is not defined" in rows[2].status
    page = tmp_path / "page.md"
    md = report(sweeps[0], page).read_text()
    assert md.count("| TANet-") == 4 and "75.95" in md  # paper numbers beside ours
    assert (sweeps[0] / "report.png").stat().st_size > 0 and (sweeps[0] / "report.csv").is_file()
    assert "not yet run" in page.read_text()
