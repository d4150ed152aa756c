"""The comparison of a sweep, locally and in W&B: written by the sweep itself, built with wandb-workspaces.

W&B is real (offline/disabled, never mocked); the W&B Report and workspace view are the library's own
objects, built from the definition the sweep wrote and driven up to the network call of ``save()``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tanet_lightning.analysis import wandb_report
from tanet_lightning.analysis.paper import TABLES
from tanet_lightning.analysis.report import collect, report
from tanet_lightning.config import config_dir
from tanet_lightning.models.temporal import TEMPORAL
from tanet_lightning.report import main

pytest.importorskip("wandb_workspaces", reason="the W&B report needs the `wandb` extra (wandb-workspaces)")
from pydantic import TypeAdapter  # noqa: E402  (a dependency of wandb-workspaces)
from wandb_workspaces.reports import v2 as wr  # noqa: E402
from wandb_workspaces.workspaces import Workspace  # noqa: E402


@pytest.fixture
def no_wandb_login(tmp_path, monkeypatch):
    """No credentials anywhere W&B looks for them: publishing must stop at the login."""
    for var in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))


def fake_sweep(make_cfg, tmp_path: Path, positions=("a", "b", "c")) -> tuple[Path, str]:
    """A sweep directory laid out as Hydra and train.py leave it (ablation_position with logger=wandb):
    the first two jobs finished, the last one failed; one resolved W&B group for all, as in a launch."""
    cfg = OmegaConf.to_container(make_cfg(["+experiment=ablation_position", "+preset=synthetic", "logger=wandb"]),
                                 resolve=True)
    group = cfg["logger"]["wandb"]["group"]
    sweep = tmp_path / "logs" / "train" / "multiruns" / "ablation_position" / "2024-01-01_00-00-00"
    for i, pos in enumerate(positions):
        job = sweep / f"model.position-{pos}__seed-0"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model.position={pos}"]))
        cfg["model"]["position"] = pos
        cfg["logger"]["wandb"]["name"] = job.name
        (job / "config_resolved.yaml").write_text(yaml.safe_dump(cfg))
        if i < len(positions) - 1:
            (job / "metrics.json").write_text(json.dumps({"test/top1": 0.5 + i / 10, "test/top5": 0.9,
                                                          "model/gflops": 0.15, "model/params": 1.2e7}))
        else:
            reason = "ValueError: position 'c' is not defined for BasicBlock"
            (job / "run.json").write_text(json.dumps({"state": "failed", "reason": reason}))
    return sweep, group


def test_report_definition_filters_on_the_sweep_group(make_cfg, tmp_path, no_wandb_login):
    sweep, group = fake_sweep(make_cfg, tmp_path)
    assert re.fullmatch(r"ablation_position-\d{8}-\d{6}", group)  # as conf/logger/wandb.yaml names it
    report(sweep)
    spec = wandb_report.load(sweep)
    assert spec["groups"] == [group] and spec["keys"] == ["model.position"] == list(TABLES["ablation_position"].keys)
    # titled after what ran (a synthetic ResNet-18 sweep), not after the paper table's Kinetics setting
    assert spec["title"].startswith("Table 5a settings on synthetic motion videos, ResNet-18")
    assert spec["project"] == "tanet-lightning"
    assert not spec["online"] and spec["offline_runs"] == []  # WANDB_MODE=disabled: nothing to sync
    assert "| TANet-c |" in spec["table"] and "failed" in spec["table"] and "75.95" in spec["table"]

    rep = wandb_report.build_report(spec, entity="someone")
    assert isinstance(rep, wr.Report) and rep.title.startswith("Table 5a")
    grid = next(b for b in rep.blocks if isinstance(b, wr.PanelGrid))
    (runset,) = grid.runsets
    assert runset.filters == f"Metric(\"Group\") == '{group}'" and runset.project == "tanet-lightning"
    pc = next(p for p in grid.panels if isinstance(p, wr.ParallelCoordinatesPlot))
    assert [c.metric for c in pc.columns] == [wr.Config("model.position"), wr.SummaryMetric("test/top1")]
    bars = [p.metrics for p in grid.panels if isinstance(p, wr.BarPlot)]
    assert bars == [["test/top1", "test/top5"], ["model/gflops"], ["model/params"]]
    lines = [(p.x, p.y) for p in grid.panels if isinstance(p, wr.LinePlot)]
    assert lines == [("epoch", ["val/top1"]), ("epoch", ["train/loss_epoch"])]
    assert any(isinstance(b, wr.MarkdownBlock) and "paper top-1" in b.text for b in rep.blocks)
    # the library serialises what it will send: the group filter and the swept key are in it
    dumped = json.dumps(TypeAdapter(wr.Report).dump_python(rep, mode="json"))
    assert group in dumped and "model.position" in dumped and "test/top1" in dumped

    view = wandb_report.build_workspace(spec, entity="someone")
    assert isinstance(view, Workspace) and [s.name for s in view.sections] == [
        "Test accuracy", "Training curves", "Complexity"]
    assert [g.name for g in view.runset_settings.groupby] == ["experiment_name", "model.position"]
    assert "ablation_position" in view.runset_settings.filters

    # publishing goes as far as W&B's login, then says what to do
    with pytest.raises(Exception, match="not logged in|API key"):
        rep.save()
    with pytest.raises(wandb_report.PublishError, match="wandb login"):
        wandb_report.publish(spec)


def test_report_cli_wandb_exits_2_without_login(make_cfg, tmp_path, no_wandb_login, capsys):
    sweep, _ = fake_sweep(make_cfg, tmp_path, positions=("a", "b"))
    with pytest.raises(SystemExit) as e:
        main([str(sweep), "--wandb"])
    assert e.value.code == 2 and "wandb login" in capsys.readouterr().err
    assert (sweep / "report.md").is_file() and (sweep / wandb_report.FILE).is_file()  # the local part is done


def test_no_wandb_definition_without_the_wandb_logger(make_cfg, tmp_path):
    sweep, _ = fake_sweep(make_cfg, tmp_path, positions=("a", "b"))
    for p in sweep.glob("*/config_resolved.yaml"):
        cfg = yaml.safe_load(p.read_text())
        del cfg["logger"]["wandb"]
        p.write_text(yaml.safe_dump(cfg))
    report(sweep)
    assert (sweep / "report.md").is_file() and not (sweep / wandb_report.FILE).exists()
    with pytest.raises(FileNotFoundError, match="logger=wandb"):
        wandb_report.load(sweep)


@pytest.mark.heavy
@pytest.mark.parametrize("name", list(TABLES))
def test_paper_sweeps_are_declared_once(make_cfg, name):
    """conf/experiment/NAME.yaml takes its jobs from analysis/paper.py, and the keys declared there
    tell every job of the sweep apart and map it to a paper row."""
    raw = OmegaConf.load(Path(config_dir()) / "experiment" / f"{name}.yaml")
    assert OmegaConf.to_container(raw.hydra.sweeper, resolve=False) == {"params": f"${{tanet.sweep:{name}}}"}
    make_cfg([f"+experiment={name}"], tiny=False)  # sets the working directory and data location
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        hydra_cfg = compose("train", overrides=[f"+experiment={name}"], return_hydra_config=True)
    params = [f"{k}={v}" for k, v in hydra_cfg.hydra.sweeper.params.items()]
    jobs = [j for batch in BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
            for j in batch]
    table = TABLES[name]
    settings, rows = set(), set()
    for job in jobs:
        cfg = OmegaConf.to_container(make_cfg([f"+experiment={name}", *job], tiny=False), resolve=True)
        settings.add(tuple(str(v) for v in table.settings(cfg).values()))
        rows.add(table.row(cfg))
    assert len(settings) == len(jobs) == len(rows)
    # every row is the paper's, but the modules after TAM (their numbers are their own papers', not Table 2's)
    after_tam = {spec.paper_row for spec in TEMPORAL.values() if spec.reported and spec.resnet_row}
    if name == "temporal_modules_vit":  # not a paper table: AIM's frozen K400 row is the one paper row of its setting
        assert set(table.numbers) == {"AIM, frozen"} and set(table.numbers) < rows
    else:
        assert rows - set(table.numbers) == (after_tam if name == "temporal_modules" else set())


@pytest.mark.slow
def test_sweep_ends_with_local_and_wandb_reports(tmp_path, data_dir, tiny_synthetic):
    """A 2-job sweep with logger=wandb (offline), as a user launches it: no report command is typed."""
    cmd = [sys.executable, "-m", "tanet_lightning.train", "+experiment=ablation_position", "+preset=synthetic",
           "model.position=a,b", "logger=wandb", *tiny_synthetic, "trainer.max_epochs=1",
           "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false",
           "callbacks.model_summary=null", "data.test_views=1x1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "TANET_"))}
    env.update(WANDB_MODE="offline", TANET_DATA_DIR=str(data_dir), HOME=str(tmp_path / "home"))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns" / "ablation_position").glob("*")
    assert {p.name for p in sweep.iterdir()} >= {"report.md", "report.csv", "report.png", wandb_report.FILE}
    assert (sweep / "report.md").read_text().count("| TANet-") == 2
    jobs = collect(sweep)
    groups = {j.cfg["logger"]["wandb"]["group"] for j in jobs}
    assert len(jobs) == 2 and len(groups) == 1  # one W&B group per launch, though the jobs started apart
    spec = json.loads((sweep / wandb_report.FILE).read_text())
    assert spec["groups"] == sorted(groups) and spec["keys"] == ["model.position"]
    assert len(spec["offline_runs"]) == 2 and not spec["online"]
    assert all(Path(p).is_dir() for p in spec["offline_runs"])
    assert "wandb sync" in proc.stdout + proc.stderr  # the log says how to publish later
    grid = next(b for b in wandb_report.build_report(spec, "someone").blocks if isinstance(b, wr.PanelGrid))
    assert grid.runsets[0].filters == f"Metric(\"Group\") == '{spec['groups'][0]}'"
