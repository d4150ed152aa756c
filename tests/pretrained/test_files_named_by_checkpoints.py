"""A checkpoint or a save_pretrained folder never makes the project open a file the user did not name.

The network's arguments read from a file are an allow-list (``models.video.model_args_from_file``): timm
arguments that load a file or download one (``checkpoint_path``, ``pretrained_cfg_overlay``,
``pretrained``, ...) in a checkpoint's ``hyper_parameters.backbone_kwargs`` or a folder's ``config.json``
are refused by every application (exit 2, the key and the file named) before that file is opened; the
checkpoint's record of how it was trained (``pretrained``, ``pretrained_path``, ``init_from``) is never
followed. Whether the file was opened is seen by an audit hook on Python's ``open`` (torch.load opens a
path with it). The file the checkpoint names is a real state dict of its backbone: before the allow-list,
timm loaded it without a word and the applications ended with exit 0.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import uuid
from pathlib import Path

import pytest
import torch

from tanet_lightning.base.errors import CheckpointError
from tanet_lightning.models.backbones import create_backbone
from tanet_lightning.models.convert import load_init_weights
from tanet_lightning.models.load import Checkpoint
from tanet_lightning.models.video import VideoClassifier, create_video_model
from tinyconf import TINY_RUN, TINY_SYNTHETIC, write_gop_video

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "tests" / "fixtures" / "ckpt_v0_1.ckpt"  # a real training checkpoint: tiny ResNet-18 TANet, T=2
TINY_BACKBONE = {"channels": [4, 8, 16, 32], "stem_width": 8}  # its backbone_kwargs

OPENED: list[str] = []  # every path opened with Python's open() that contains a tripwire's name
_hook: list[bool] = []


def _audit(event: str, args: tuple) -> None:
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)) and "tripwire-" in str(args[0]):
        OPENED.append(str(args[0]))


@pytest.fixture
def tripwire(tmp_path) -> Path:
    """A file a checkpoint names: a state dict timm would load into the backbone without complaint."""
    if not _hook:  # audit hooks stay for the process: one, for the whole session
        sys.addaudithook(_audit)
        _hook.append(True)
    path = tmp_path / f"tripwire-{uuid.uuid4().hex}.pth"
    torch.save(create_backbone("resnet18", **TINY_BACKBONE).state_dict(), path)
    OPENED.clear()
    return path


def poisoned(path: Path, backbone_kwargs: dict | None = None, **hparams) -> Path:
    """The fixture checkpoint with ``backbone_kwargs`` added to its backbone's and ``hparams`` to its own."""
    raw = torch.load(CKPT, map_location="cpu", weights_only=True)
    raw["hyper_parameters"]["backbone_kwargs"].update(backbone_kwargs or {})
    raw["hyper_parameters"].update(hparams)
    torch.save(raw, path)
    return path


def hub_folder(path: Path, backbone_kwargs: dict) -> Path:
    """The fixture checkpoint as a save_pretrained folder whose config.json has ``backbone_kwargs`` added."""
    ckpt = Checkpoint.read(CKPT)
    ckpt.build().save_pretrained(path, class_names=ckpt.class_names, protocol=ckpt.data_config)
    config = json.loads((path / "config.json").read_text())
    config["model"]["backbone_kwargs"].update(backbone_kwargs)
    (path / "config.json").write_text(json.dumps(config))
    return path


def run_app(app: str, args: list[str], monkeypatch, capsys, caplog) -> tuple[int, str]:
    """``python -m tanet_lightning.<app> ARGS`` in this process: (exit status, what it said)."""
    main = importlib.import_module(f"tanet_lightning.{app}").main
    monkeypatch.setattr(sys, "argv", [f"tanet-{app}", *args])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    # a fresh process's logging: an earlier in-process Hydra app left handlers on streams pytest has closed
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    code = 0
    with caplog.at_level(logging.INFO, logger="tanet_lightning"):
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, caplog.text + out.err + out.out


def app_args(app: str, ckpt: Path, tmp: Path) -> tuple[str, list[str]]:
    """The application and the command line that make it read ``ckpt`` (model.init_from: a training)."""
    video = tmp / "clip.mp4"
    if not video.exists():
        write_gop_video(video, gop=4, frames=8)
    run = f"hydra.run.dir={tmp / ('run-' + app)}"
    data = [*TINY_SYNTHETIC, "data.num_frames=2"]
    return {
        "eval": ("eval", [f"ckpt_path={ckpt}", *data, run]),
        "predict": ("predict", [f"ckpt_path={ckpt}", f"inputs=[{video}]", "progress=false", run]),
        "visualize": ("visualize", [f"ckpt_path={ckpt}", f"videos=[{video}]", run]),
        "init_from": ("train", ["model=tanet_small", f"+model.init_from={ckpt}", *data, *TINY_RUN, run]),
    }[app]


@pytest.fixture
def in_tmp(tmp_path, data_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANET_DATA_DIR", str(data_dir))
    for var in ("TANET_ROOT", "TANET_LOG_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.mark.parametrize("app", ["eval", "predict", "visualize", "init_from"])
def test_a_checkpoint_naming_a_file_is_refused_by_every_application(app, in_tmp, tripwire, monkeypatch, capsys,
                                                                     caplog):
    ckpt = poisoned(in_tmp / "model.ckpt", {"checkpoint_path": str(tripwire)})
    code, said = run_app(*app_args(app, ckpt, in_tmp), monkeypatch, capsys, caplog)
    assert code == 2, said[-3000:]
    assert f"{ckpt} sets model.backbone_kwargs.checkpoint_path='{tripwire}', refused" in said
    assert "Traceback" not in said
    assert OPENED == []


@pytest.mark.parametrize("kwargs", [
    {"pretrained_cfg_overlay": {"file": "TRIPWIRE"}},  # timm's pointer to a local weights file
    {"pretrained_cfg": {"file": "TRIPWIRE", "url": "https://example.com/w.pth"}},
    {"pretrained": True},  # a download
    {"cache_dir": "TRIPWIRE"},
], ids=lambda kw: next(iter(kw)))
def test_every_key_that_loads_or_downloads_is_refused(kwargs, in_tmp, tripwire, monkeypatch, capsys, caplog):
    kwargs = json.loads(json.dumps(kwargs).replace("TRIPWIRE", str(tripwire)))
    key = next(iter(kwargs))
    ckpt = poisoned(in_tmp / "model.ckpt", kwargs)
    code, said = run_app(*app_args("predict", ckpt, in_tmp), monkeypatch, capsys, caplog)
    assert code == 2, said[-3000:]
    assert f"ckpt_path={ckpt} sets model.backbone_kwargs.{key}=" in said and "(not an architecture argument)" in said
    assert OPENED == []


def test_a_hub_folder_naming_a_file_is_refused_naming_its_config(in_tmp, tripwire, monkeypatch, capsys, caplog):
    folder = hub_folder(in_tmp / "hf", {"checkpoint_path": str(tripwire)})
    code, said = run_app(*app_args("predict", folder, in_tmp), monkeypatch, capsys, caplog)
    assert code == 2, said[-3000:]
    assert f"ckpt_path={folder} (its config.json) sets model.backbone_kwargs.checkpoint_path=" in said
    with pytest.raises(CheckpointError, match=f"{folder}/config.json sets model.backbone_kwargs.checkpoint_path="):
        VideoClassifier.from_pretrained(folder)
    with pytest.raises(CheckpointError, match=r"model.init_from=.*\(its config.json\) sets model.backbone_kwargs"):
        load_init_weights(create_video_model("resnet18", "tam", 8, 2, backbone_kwargs=TINY_BACKBONE), folder)
    assert OPENED == []


def test_architecture_arguments_load_and_odd_values_or_names_are_refused(tmp_path):
    # an allowed key with its own kind of value builds and loads as before
    ok = Checkpoint.read(poisoned(tmp_path / "ok.ckpt", {"drop_path_rate": 0.1, "zero_init_last": True}))
    assert ok.build().model_args["backbone_kwargs"] == {**TINY_BACKBONE, "drop_path_rate": 0.1,
                                                          "zero_init_last": True}
    bad_value = poisoned(tmp_path / "v.ckpt", {"drop_path_rate": "weights.pth"})
    with pytest.raises(CheckpointError, match=r"drop_path_rate='weights.pth', refused \(a value it does not take\)"):
        Checkpoint.read(bad_value).build()
    for name in ("resnet18.local-dir:/tmp/x", "hf-hub:timm/resnet18", "../resnet18"):
        with pytest.raises(CheckpointError, match=f"^ckpt_path={tmp_path / 'b.ckpt'} sets model.backbone=.*refused"):
            Checkpoint.read(poisoned(tmp_path / "b.ckpt", backbone=name)).build()


def test_how_a_checkpoint_was_trained_is_not_followed(in_tmp, tripwire, monkeypatch, capsys, caplog):
    """pretrained / pretrained_path / init_from in a checkpoint are a record: predict and eval run on its
    weights and never open (or download) what those name."""
    ckpt = poisoned(in_tmp / "model.ckpt", pretrained=True, pretrained_path=str(tripwire), init_from=str(tripwire))
    for app in ("predict", "eval"):
        code, said = run_app(*app_args(app, ckpt, in_tmp), monkeypatch, capsys, caplog)
        assert code == 0, said[-3000:]
    assert (in_tmp / "run-predict" / "predictions.jsonl").read_text().count("\n") == 1
    assert (in_tmp / "run-eval" / "metrics.json").is_file()
    assert OPENED == []
