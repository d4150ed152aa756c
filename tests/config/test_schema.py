"""The typed config schema: real Hydra composition with real overrides; every refusal names the key,
the value and the fix, before the application reads data or writes a file."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import shlex
import sys
import time
import typing
from pathlib import Path
from typing import Annotated

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from pydantic import Field

import launcher as launched
from documented import PAGES, documented_commands, expected_exit
from tanet_lightning import complexity, ensemble
from tanet_lightning.analysis.paper import TABLES
from tanet_lightning.base.errors import ConfigError
from tanet_lightning.base.typed import model_of, problems, settings_of
from tanet_lightning.config import config_dir
from tanet_lightning.config.schema import MONITORABLE, groups, validate
from tanet_lightning.data.datamodule import VideoDataModule
from tanet_lightning.data.settings import ClipSettings
from tanet_lightning.eval import evaluate
from tanet_lightning.export import export
from tanet_lightning.models import create_video_model
from tanet_lightning.models.temporal import TEMPORAL
from tanet_lightning.predict import predict
from tanet_lightning.train import train
from tanet_lightning.training.module import VideoClassificationModule

EXPERIMENTS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))
# the adapter papers' recipes on a frozen CLIP ViT-B/16: the synthetic preset's ResNet-18 cannot carry their modules
FROZEN_CLIP = [e for e in EXPERIMENTS if "_vit_b16_" in e]


def nothing_written(cfg) -> bool:
    return not Path(cfg.paths.output_dir).exists()


# ------------------------------------------------------------------------------------------------
# Data and settings a user gets wrong, and their neighbours, through the applications


@pytest.mark.parametrize("override, message", [
    # the cosine schedule is per epoch: max_steps alone flipped the lr every epoch; null crashed after one
    (["trainer.max_epochs=-1", "trainer.max_steps=8"],
     r"trainer.max_epochs=-1 must be an integer >= 1: the lr schedules are defined per epoch \(trainer.max_steps=8"),
    (["trainer.max_epochs=null", "trainer.max_steps=8"], r"trainer.max_epochs=None must be an integer >= 1"),
    (["train=false", "test=false"], r"train=false test=false does nothing"),
    # the adapters' warm-up as long as the run: refused when the optimizer was built, after the data
    (["scheduler=warmup_cosine", "trainer.max_epochs=2"],
     r"scheduler.warmup_epochs=2 must lie in \[0, trainer.max_epochs=2\): the cosine starts after the warm-up"),
    (["model.fc_lr_mult=-1"],
     r"model.fc_lr_mult=-1 must be > 0 \(the classifier's lr = optimizer.lr x fc_lr_mult; 1.0: the same lr\)"),
    (["model.fc_lr_mult=0"], r"model.fc_lr_mult=0 must be > 0"),
    (["trainer.precision=64"], r"trainer.precision=64 must be one of \['32-true', '16-mixed', 'bf16-mixed'"),
    (["callbacks.model_checkpoint.monitor=val/top_1"],
     r"callbacks.model_checkpoint.monitor='val/top_1' must be one of \[.*'val/top1'"),
    (["callbacks.model_checkpoint.mode=maximum"],
     r"callbacks.model_checkpoint.mode='maximum' must be one of \['min', 'max'\]"),
    (["callbacks.model_checkpoint.mode=min"], r"callbacks.model_checkpoint.mode=min keeps the lowest val/top1: give "
                                              r"callbacks.model_checkpoint.mode=max"),
    (["data.batch_size=abc"], r"data.batch_size='abc' must be an integer >= 1"),
    (["data.test_batch_size=0"], r"data.test_batch_size=0 must be >= 1"),
    (["data.num_workers=-1"], r"data.num_workers=-1 must be >= 0"),
    (["data.test_views=10x2"], r"data.test_views='10x2': .*give clips x crops, e.g. 10x3"),
    (["data.test_views=three"], r"data.test_views='three': .*give clips x crops"),
    (["data.crop_size=64"], r"data.crop_size=64 is larger than data.short_side=32 .*give data.crop_size<=32"),
    (["data.scales=[1.0,0]"], r"data.scales=\[1.0, 0\]: every item must be > 0 and <= 1"),
    (["optimizer=sgd", "optimizer.momentum=1.0"], r"optimizer.momentum=1.0 must be >= 0 and < 1"),
    (["optimizer.weight_decay=-1e-4"], r"optimizer.weight_decay=-0.0001 must be >= 0"),
    (["seed=abc"], r"seed='abc' must be an integer or null >= 0 and <= 4294967295 \(null: no seeding\); give seed=N"),
    (["model.stages=[res6]"], r"model.stages=\['res6'\] must be one of \['res2', 'res3', 'res4', 'res5'\]"),
    (["model.dropout=1.5"], r"model.dropout=1.5 must be >= 0 and < 1"),
    (["model.tam.kernel_size=4"], r"model.tam.kernel_size=4: a temporal kernel size must be odd"),
    (["+trainer.max_epoch=3"], r"trainer.max_epoch: unknown key; did you mean trainer.max_epochs\?"),
    (["+data.batchsize=4"], r"data.batchsize: unknown key; did you mean data.batch_size\?"),
    (["+optimizer.weight_decays=0"], r"optimizer.weight_decays: unknown key; did you mean optimizer.weight_decay\?"),
    (["+callbacks.model_checkpoint.monitr=val/top1"],
     r"callbacks.model_checkpoint.monitr: unknown key; did you mean callbacks.model_checkpoint.monitor\?"),
    (["model/temporal=tsm", "+model.temporal.fold=4"],
     r"model.temporal.fold: unknown key; did you mean model.temporal.fold_div\? \(or remove it\)"),
    (["model/temporal=tsm", "+model.temporal.alpha=4"],
     r"model.temporal.alpha: unknown key \(remove it\); model/temporal=tsm takes \['fold_div'\]"),
    (["+seeds=1"], r"seeds: unknown key; did you mean seed\?"),
    (["data=video_folder"], r"data.root is required \(it is \?\?\? in the config\): give data.root=DIR"),
    # inf (and 1e400, which overflows to it) passed the schema and trained to a nan loss
    (["optimizer.lr=inf"], r"optimizer.lr=inf is not a finite number .*give a finite value \(optimizer.lr=NUMBER\)"),
    (["optimizer.lr=1e400"], r"optimizer.lr=inf is not a finite number"),
    (["optimizer.lr=nan"], r"optimizer.lr=nan is not a finite number"),
    (["data.scales=[1.0,1e400]"], r"data.scales=\[1.0, inf\] is not a finite number"),
    # an untyped key of an open group (the callback's own argument) is checked too
    (["callbacks.data_wait_monitor.warn_fraction=inf"],
     r"callbacks.data_wait_monitor.warn_fraction=inf is not a finite"),
    # Lightning's raw ValueError from numpy's seed bounds
    (["seed=-1"], r"seed=-1 must be >= 0 and <= 4294967295 \(null: no seeding\); give seed=N"),
    (["seed=4294967296"], r"seed=4294967296 must be >= 0 and <= 4294967295"),
])
def test_train_refuses_values_that_cannot_work_before_writing(make_cfg, override, message):
    cfg = make_cfg(override, tiny=not any(o.startswith("data=") for o in override))  # tiny: synthetic keys
    with pytest.raises(ConfigError, match=message):
        train(cfg)
    assert nothing_written(cfg)


def test_all_problems_are_reported_at_once(make_cfg):
    with pytest.raises(ConfigError) as err:
        train(make_cfg(["data.batch_size=0", "optimizer.lr=-1", "trainer.precision=64"]))
    text = str(err.value)
    assert text.startswith("3 config values cannot work:")
    for key in ("data.batch_size=0", "optimizer.lr=-1", "trainer.precision=64"):
        assert key in text


def test_finetune_requires_init_from(make_cfg, tmp_path):
    (tmp_path / "videos").mkdir()
    cfg = make_cfg(["+experiment=finetune", f"data.root={tmp_path / 'videos'}"], tiny=False)
    # conf/model's `init_from: null` used to win over the experiment's ???: a run from scratch
    with pytest.raises(ConfigError, match=r"^model.init_from is required by \+experiment=finetune: give "
                                          r"model.init_from=CKPT"):
        train(cfg)
    assert nothing_written(cfg)
    given = make_cfg(["+experiment=finetune", f"data.root={tmp_path / 'videos'}", "model.init_from=some.ckpt"],
                     tiny=False)
    assert given.model.init_from == "some.ckpt"
    validate(given, "train")


def test_eval_predict_export_check_their_own_keys(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"ckpt_path is required \(it is \?\?\? in the config\): "
                                          r"give ckpt_path=PATH \(a checkpoint"):
        evaluate(make_cfg([], name="eval"))
    with pytest.raises(ConfigError, match=r"view_average='mean' must be one of \['logits', 'prob'\]"):
        evaluate(make_cfg(["ckpt_path=x.ckpt", "view_average=mean"], name="eval"))
    for bad, message in ((["topk=0"], r"topk=0 must be >= 1; give topk=5"),
                         (["views=3"], r"views=3 must be a string or null \(clips x crops.*\); give views=1x1"),
                         (["device=gpu"], r"device='gpu': give cpu, cuda, cuda:N or mps")):
        with pytest.raises(ConfigError, match=message):
            predict(make_cfg(["ckpt_path=x.ckpt", "inputs=[a.mp4]", *bad], name="predict", tiny=False))
    with pytest.raises(ConfigError, match=r"inputs is required .*give inputs=\[a.mp4,videos/\] \(video files"):
        predict(make_cfg(["ckpt_path=x.ckpt"], name="predict", tiny=False))
    with pytest.raises(ConfigError, match=r"format='tflite' must be one of \['onnx', 'hf'\]"):
        export(make_cfg(["ckpt_path=x.ckpt", "format=tflite"], name="export", tiny=False))


def test_an_output_path_under_a_file_is_refused(make_cfg, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("a file\n")
    under = rf"\({afile} is a file, not a directory\)"
    cfg = make_cfg(["ckpt_path=x.ckpt", "inputs=[a.mp4]", f"out={afile}/p.jsonl"], name="predict", tiny=False)
    with pytest.raises(ConfigError, match=rf"out={afile}/p.jsonl cannot be written {under}; give out=PATH"):
        predict(cfg)
    cfg = make_cfg(["ckpt_path=x.ckpt", f"out={afile}/m.onnx"], name="export", tiny=False)
    with pytest.raises(ConfigError, match=rf"out={afile}/m.onnx cannot be written {under}; give out=PATH"):
        export(cfg)
    cfg = make_cfg([f"paths.log_dir={afile}/logs"])
    with pytest.raises(ConfigError, match=rf"paths.log_dir={afile}/logs is not a writable directory {under}; "
                                          rf"point it elsewhere"):
        train(cfg)


# ------------------------------------------------------------------------------------------------
# What the shipped configs and documented commands compose to


def _experiment_overrides(name: str, tmp_path: Path) -> list[str]:
    if name == "finetune":  # the keys the experiment requires
        return [f"model.init_from={tmp_path / 'ft.ckpt'}", f"data.root={tmp_path}"]
    return []


@pytest.mark.parametrize("preset", [[], ["+preset=synthetic"]], ids=["paper", "synthetic"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_validates(make_cfg, tmp_path, experiment, preset):
    if preset and experiment in FROZEN_CLIP:  # the CPU form the recipe's comment gives
        preset = [*preset, "+model/arch=vit_tiny", "scheduler=warmup_cosine"]
    validate(make_cfg([f"+experiment={experiment}", *preset, *_experiment_overrides(experiment, tmp_path)],
                      tiny=False), "train")


@pytest.mark.parametrize("experiment", sorted(TABLES))
def test_every_sweep_point_validates(make_cfg, experiment):
    """Each value of each swept key (hydra.sweeper.params) on top of the experiment."""
    for key, values in TABLES[experiment].sweep.items():
        parsed = OverridesParser.create().parse_overrides([f"{key}={values}"])[0]
        for value in parsed.sweep_string_iterator():
            validate(make_cfg([f"+experiment={experiment}", f"{key}={value}"], tiny=False), "train")


def _documented(app: str):
    for page in PAGES:
        for line, command, _section in documented_commands(page):
            words = shlex.split(command, comments=True)
            if words[:3] == ["python", "-m", f"tanet_lightning.{app}"] and expected_exit(command) == 0:
                yield pytest.param(words[3:], id=f"{page.name}:{line}")


@pytest.mark.parametrize("app", ["train", "eval", "predict", "export", "visualize", "prepare"])
def test_documented_commands_validate(make_cfg, tmp_path, app):
    commands = list(_documented(app))
    if app == "train":
        assert len(commands) > 5
    for param in commands:
        overrides = []
        for word in param.values[0]:
            if word.startswith("-"):  # --multirun, -m, hydra flags
                continue
            parsed = OverridesParser.create().parse_overrides([word])[0]
            if parsed.is_sweep_override():
                word = f"{parsed.get_key_element()}={next(iter(parsed.sweep_string_iterator()))}"
            overrides.append(word)
        needs = _experiment_overrides("finetune", tmp_path) if "+experiment=finetune" in overrides else []
        given = {o.split("=")[0] for o in overrides}
        cfg = make_cfg([*overrides, *(n for n in needs if n.split("=")[0] not in given)], name=app, tiny=False)
        validate(cfg, app)


def test_the_group_schemas_are_the_constructors_arguments():
    """data.* and model.* are the models the constructors check their own arguments with: every
    VideoDataModule / VideoClassificationModule / network argument is a key (and back)."""

    def named(fn) -> set[str]:
        return {n for n, p in inspect.signature(fn).parameters.items() if p.kind != p.VAR_KEYWORD} - {"self"}

    assert groups.Data is settings_of(VideoDataModule)
    assert set(groups.Data.model_fields) == named(VideoDataModule.__init__) | set(ClipSettings.keys())
    model = named(VideoClassificationModule.__init__) | named(create_video_model)
    assert set(groups.Model.model_fields) == model - {"num_classes", "optimizer", "scheduler"}


def test_a_range_is_stated_once_in_the_code(make_cfg):
    """ClipSettings's annotation is the schema's range: read off the class (not restated), the schema's message
    and the constructor's quote it, and a class with another bound gives a schema with that bound."""
    hint = typing.get_type_hints(ClipSettings, include_extras=True)["num_frames"]
    bound = next(c.ge for m in hint.__metadata__ for c in m.metadata if hasattr(c, "ge"))  # Field(ge=...)
    line = f"data.num_frames={bound - 1} must be >= {bound}"
    for refuse in (lambda: validate(make_cfg([f"data.num_frames={bound - 1}"]), "train"),  # (model.num_frames too)
                   lambda: ClipSettings(num_frames=bound - 1),
                   lambda: VideoDataModule("unused", num_frames=bound - 1)):  # refused before anything is read
        with pytest.raises(ConfigError) as err:
            refuse()
        assert line in [t.strip() for t in str(err.value).splitlines()]

    # the schema's data model is assembled from the constructor and the clip settings class: another bound there
    # is another bound in the schema, with nothing else edited
    moved = dataclasses.make_dataclass("ClipSettings", [("num_frames", Annotated[int, Field(ge=bound + 3)], 8)])
    data = model_of(VideoDataModule.__init__, moved)
    assert problems(data, {"num_frames": bound + 1}, "data.") == [f"data.num_frames={bound + 1} must be >= {bound + 3}"]
    assert problems(groups.Data, {"num_frames": bound + 1}, "data.") == []


def test_monitorable_metrics_are_what_the_module_logs(make_cfg):
    """Every metric the checkpoint callback may monitor is logged by a tiny real fit."""
    cfg = make_cfg(["trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "test=false"])
    _, objects = train(cfg)
    logged = set(objects["trainer"].callback_metrics)
    assert set(MONITORABLE) <= logged, set(MONITORABLE) - logged


# ------------------------------------------------------------------------------------------------
# argparse applications and the command line


@pytest.mark.parametrize("main, argv, message", [
    (complexity.main, ["--frames", "0"], r"--frames=0 must be >= 1"),
    (complexity.main, ["--backbone", "resnet9000"], r"--backbone='resnet9000': unknown backbone"),
    (complexity.main, ["--rows", "TANet", "TSN"], r"--rows=\['TANet', 'TSN'\] must be one of \[.*'TANet'"),
    (ensemble.main, ["a.npz", "b.npz", "--weights", "1"], r"--weights has 1 values for 2 score files"),
    (ensemble.main, ["a.npz", "--weights", "-1"], r"--weights=\[-1.0\]: every item must be >= 0"),
])
def test_argparse_applications_refuse_bad_arguments(main, argv, message, capsys, caplog):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err + caplog.text  # printed; logged where logging is configured (here)
    assert re.search(message, err), err
    assert "Traceback" not in err


def test_convert_refuses_bad_arguments_before_reading(tmp_path, capsys, caplog):
    from tanet_lightning import convert

    afile = tmp_path / "a.txt"
    afile.write_text("x")
    with pytest.raises(SystemExit) as exit_:
        convert.main([str(tmp_path / "missing.pth"), "--out", f"{afile}/out.ckpt", "--num-frames", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err + caplog.text
    assert "--num-frames=0 must be >= 1" in err and f"--out {afile}/out.ckpt cannot be written" in err


@pytest.mark.heavy
def test_train_command_with_a_bad_value_exits_2_and_writes_nothing(tmp_path, data_dir, launcher):
    env = {**os.environ, "TANET_DATA_DIR": str(data_dir), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("TANET_LOG_DIR", None)
    env.pop("TANET_ROOT", None)
    # ++: the callback is (to be) registered in conf/hydra/default.yaml; this also works before that
    cmd = [sys.executable, "-m", "tanet_lightning.train", "data.batch_size=abc",
           "++hydra.callbacks.validate._target_=tanet_lightning.config.schema.ValidateConfig"]
    start = time.monotonic()
    proc = launched.run(launcher, cmd, tmp_path, env, timeout=300)  # forked from the preloaded launcher
    took = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "data.batch_size='abc' must be an integer >= 1" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "logs").exists(), list((tmp_path / "logs").rglob("*"))
    assert took < 120  # the imports only: no data, no model


# ~45 compositions (4-10 s): `make test` only; test_train's every-option test composes them all in test-quick
@pytest.mark.heavy
def test_schema_knows_every_group_option(make_cfg):
    """Every option of every group composes into a config the schema accepts (the defaults are valid)."""
    root = Path(config_dir())
    for group in ("optimizer", "scheduler", "trainer", "callbacks", "logger", "model", "model/temporal", "debug"):
        for option in sorted(p.stem for p in (root / group).glob("*.yaml")):
            # each module on a backbone it is defined on (ST-Adapter, AIM, TokShift: ViTs only)
            vit_only = option in TEMPORAL and not TEMPORAL[option].cnn
            arch = "+model/arch=vit_tiny" if vit_only else "model.backbone=resnet50"
            extra = ["model=tanet", arch] if group == "model/temporal" else []
            extra += ["trainer.max_epochs=4"] if group == "scheduler" else []  # room for warmup_cosine's warm-up
            validate(make_cfg([f"{group}={option}", *extra], tiny=group != "callbacks"), "train")
    for option in sorted(p.stem for p in (root / "data").glob("*.yaml")):
        validate(make_cfg([f"data={option}", "data.root=somewhere"], tiny=False), "train")


def test_open_groups_take_any_argument_of_their_target(make_cfg):
    """The logger's WandbLogger takes **kwargs: any key passes; SGD's arguments are its signature."""
    validate(make_cfg(["logger=wandb", "+logger.wandb.notes=hello"]), "train")
    validate(make_cfg(["optimizer=sgd", "+optimizer.nesterov=true"]), "train")
    assert OmegaConf.select(make_cfg(["optimizer=sgd"]), "optimizer.momentum") == 0.9



def test_the_hydra_callback_refuses_before_the_run_directory_exists(tmp_path, monkeypatch):
    """ValidateConfig.on_run_start sees Hydra's composed config (hydra node included, no runtime output
    dir yet): a refusal is exit 2 with the key named; Hydra's own config is left as it was."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tanet_lightning.config.schema import ValidateConfig

    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        bad = compose("eval", overrides=["data.batch_size=0"], return_hydra_config=True)
        good = compose("eval", overrides=["ckpt_path=x.ckpt"], return_hydra_config=True)
    before = OmegaConf.to_yaml(bad)
    with pytest.raises(SystemExit) as exit_:
        ValidateConfig().on_run_start(config=bad, config_name="eval")
    assert exit_.value.code == 2
    assert OmegaConf.to_yaml(bad) == before
    ValidateConfig().on_run_start(config=good, config_name="eval")
    assert not (tmp_path / "logs").exists()


def test_an_unresolvable_override_is_named_by_its_own_key(tmp_path, monkeypatch, caplog):
    """The run name repeats every override, so it was reported at hydra.job.override_dirname."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tanet_lightning.config.schema import ValidateConfig

    monkeypatch.chdir(tmp_path)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["optimizer.lr=${nope}"], return_hydra_config=True)
    with pytest.raises(SystemExit) as exit_:
        ValidateConfig().on_run_start(config=cfg, config_name="train")
    assert exit_.value.code == 2
    assert "optimizer.lr: cannot be resolved: Interpolation key 'nope' not found (given as optimizer.lr=${nope})" \
        in caplog.text
    assert "override_dirname" not in caplog.text
    assert not (tmp_path / "logs").exists()


def test_an_unwritable_mlflow_store_is_refused_before_work(make_cfg, tmp_path, monkeypatch):
    """MLflow's database error came once the run had started."""
    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{afile}/mlflow.db")
    cfg = make_cfg(["logger=mlflow"])
    with pytest.raises(ConfigError, match=rf"logger.mlflow.tracking_uri=sqlite:///{afile}/mlflow.db: MLflow's store "
                                          rf"{afile}/mlflow.db cannot be written \({afile} is a file.*"
                                          "give MLFLOW_TRACKING_URI=sqlite:///DIR/mlflow.db"):
        train(cfg)
    assert nothing_written(cfg)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/ok/mlflow.db")
    validate(make_cfg(["logger=mlflow"]), "train")
