"""Paper experiments: every file composes, its sweep expands to the right jobs, one sweep runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tanet_lightning.analysis.report import collect, group_rows, report
from tanet_lightning.config import config_dir
from tanet_lightning.models import STAGE_NAMES
from tanet_lightning.models.temporal import (
    TAM,
    TEMPORAL,
    NonLocalBlock,
    TemporalConv,
)

SWEEPS = {  # experiment -> (number of jobs, swept key, expected values)
    "ablation_alpha_beta": (5, "model.tam", None),
    "ablation_kernel": (4, "model.tam.kernel_size", {"3", "5"}),
    "temporal_modules": (15, "model/temporal", None),
    "backbones": (10, "+model/arch", None),
    "ablation_position": (4, "model.position", {"a", "b", "c", "d"}),
    "ablation_stages": (4, "model.stages", None),
}
OTHER = ["finetune"]  # not a paper table: tests/pretrained/test_finetune_predict.py trains it
# the ViT sweep and the frozen-CLIP recipes: tests/analysis/test_experiments_vit.py
VIT = ["temporal_modules_vit", "k400_st_adapter_vit_b16_8f", "sthv2_st_adapter_vit_b16_8f", "k400_aim_vit_b16_8f",
       "sthv2_aim_vit_b16_8f"]
TAM_DEFAULTS = {"alpha": 2, "beta": 4, "kernel_size": 3}  # conf/model/tanet.yaml model.tam
RECIPES = ["k400_tanet_r50_8f", "k400_tanet_r50_16f", "sthv1_tanet_r50_8f", "sthv1_tanet_r50_16f",
           "sthv2_tanet_r50_8f", "sthv2_tanet_r50_16f"]


def sweep_jobs(cfg, cli: list[str] = ()) -> list[list[str]]:
    """What Hydra's basic sweeper will launch: config params first, then the command line (which wins)."""
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    parsed = OverridesParser.create().parse_overrides([*params, *cli])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def test_every_experiment_file_is_covered():
    files = {p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml")}
    assert files == set(SWEEPS) | set(RECIPES) | set(OTHER) | set(VIT)


@pytest.mark.heavy
@pytest.mark.parametrize("name", list(SWEEPS))
def test_sweep_expands_to_the_paper_rows(make_cfg, name):
    cfg = compose_hydra(make_cfg, name)
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.experiment_name == name
    jobs = sweep_jobs(cfg)
    n, key, values = SWEEPS[name]
    assert len(jobs) == n and len({tuple(j) for j in jobs}) == n
    if values:
        assert {o.split("=", 1)[1] for j in jobs for o in j if o.startswith(key + "=")} == values
    for job in jobs:  # every job composes, its model builds, and the swept values are in the module
        job_cfg = make_cfg([f"+experiment={name}", *job, "model.pretrained=false"], tiny=False)
        assert job_cfg.data.num_frames == job_cfg.model.num_frames
        if name == "ablation_alpha_beta":
            assert job_cfg.model.tam.kernel_size == 3
        with torch.device("meta"):  # shapes only: no weights are allocated or downloaded
            net = instantiate(job_cfg.model, num_classes=400).net
        for override in OverridesParser.create().parse_overrides(job):
            assert_swept_value_in_module(net, override.key_or_group, override.value(), job_cfg)


def tams(net: torch.nn.Module) -> list[TAM]:
    return [m for m in net.modules() if isinstance(m, TAM)]


def patched(net: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """(block name, block) of every block that holds a temporal module."""
    return [(n.removesuffix(".temporal"), net.get_submodule(n.removesuffix(".temporal")))
            for n, _ in net.named_modules() if n.endswith(".temporal")]


def arch_of(net: torch.nn.Module) -> str:
    """The timm architecture the backbone was built as (torchvision ShuffleNet: its adapter class)."""
    cfg = getattr(net.backbone, "pretrained_cfg", None)
    return cfg["architecture"] if cfg else type(net.backbone).__name__


def assert_swept_value_in_module(net: torch.nn.Module, key: str, value, cfg) -> None:
    """The value a sweep job sets, read back from the built network (not from the config)."""
    if key == "model.tam":  # alpha: width of G's first Linear (alpha x T); beta: L's reduction
        assert tams(net) and all(t.G.net[0].out_features == value["alpha"] * net.num_frames for t in tams(net))
        assert all(t.L.net[0].out_channels * value["beta"] == t.L.net[0].in_channels for t in tams(net))
    elif key == "model.tam.kernel_size":  # K: the taps of Theta (G's last Linear) and L's temporal conv
        assert tams(net) and all(t.G.net[3].out_features == value for t in tams(net))
        assert all(t.L.net[0].kernel_size == (value,) for t in tams(net))
    elif key == "data.num_frames":
        assert net.num_frames == value and all(t.G.net[0].in_features == value for t in tams(net))
    elif key == "model.position":
        blocks = patched(net)
        assert len(blocks) == 16 and {b.position for _, b in blocks} == {value}
    elif key == "model.stages":  # res2..res5 = layer1..layer4 of the ResNet-50
        layers = {f"backbone.layer{STAGE_NAMES.index(s) + 1}" for s in value}
        blocks = patched(net)
        assert blocks and {n.rsplit(".", 1)[0] for n, _ in blocks} == layers
    elif key == "model/temporal":
        spec = TEMPORAL[value]
        kinds = {type(b.temporal) for _, b in patched(net)}
        if spec.placement == "none":
            assert not kinds and not any(isinstance(m, TemporalConv) for m in net.modules())
        elif spec.placement == "inflate":
            assert not kinds and isinstance(net.backbone.layer1[0].conv1, TemporalConv)
        elif spec.placement == "after_block":
            assert len(patched(net)) == 5 and kinds == {NonLocalBlock}
        elif spec.placement == "replace_conv":  # the 3x3 conv of every block, built as the job builds it
            blocks = [m for m in net.modules() if type(m).__name__.startswith("ConvReplaced")]
            kwargs = {k: v for k, v in cfg.model.temporal.items() if k != "name"}
            made = spec.factory(torch.nn.Conv2d(64, 64, 3, padding=1, bias=False), net.num_frames, **kwargs)
            assert not kinds and blocks and {type(b.conv2) for b in blocks} == {type(made)}
            if arch_of(net) == "resnet50":
                assert len(blocks) == 16
        else:
            name, first = patched(net)[0]  # the module this name stands for, built as the job builds it
            position = cfg.model.position or spec.position
            kwargs = dict(cfg.model.tam) if spec.tam_keys else {}
            channels = (type(first).channels(first, position) if hasattr(type(first), "channels")
                        else next(m for m in first.modules() if isinstance(m, torch.nn.Conv2d)).in_channels)
            made = spec.factory(channels, net.num_frames, **kwargs)
            assert {b.position for _, b in patched(net) if hasattr(b, "position")} <= {position}
            assert repr(first.temporal) == repr(made), name
            if arch_of(net) == "resnet50":
                assert len(patched(net)) == 16
    elif key == "model/arch":
        arch = OmegaConf.load(Path(config_dir()) / "model" / "arch" / f"{value}.yaml").backbone.split(".")[0]
        assert arch_of(net) == (arch if arch in timm.list_models() else "ShuffleNetV2Features"), (value, arch_of(net))
    else:
        raise AssertionError(f"no check for swept key {key}: add one")


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


@pytest.mark.slow  # ~20 s; `make test` runs experiments/ablation_position.md
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
    record = json.loads((failed.path / "run.json").read_text())  # runs/lifecycle.py
    assert record["state"] == "failed" and "position 'c' is not defined for BasicBlock" in record["reason"]
    rows = group_rows(jobs, "ablation_position")
    assert [r.setting for r in rows] == ["TANet-a", "TANet-b", "TANet-c", "TANet-d"]
    assert rows[2].status.startswith("0/1 done, 1 failed (") and "position 'c' is not defined" in rows[2].status
    page = tmp_path / "page.md"
    md = report(sweeps[0], page).read_text()
    assert md.count("| TANet-") == 4 and "75.95" in md  # paper numbers beside ours
    assert (sweeps[0] / "report.png").stat().st_size > 0 and (sweeps[0] / "report.csv").is_file()
    assert "not yet run" in page.read_text()
