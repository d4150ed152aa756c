"""Every application fails the same way on input it refuses: one message naming what to change, exit
status 2, no traceback (base.errors.handle_user_errors), and each is a console script and a module."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "tests" / "fixtures" / "ckpt_v0_1.ckpt"


@pytest.fixture
def bare(tmp_path) -> Path:
    torch.save({"fc.weight": torch.zeros(3, 4)}, tmp_path / "bare.pth")
    return tmp_path / "bare.pth"


def cases(tmp, bare):
    run = f"hydra.run.dir={tmp / 'run'}"
    return {
        "eval": ([f"ckpt_path={bare}", run], "not a checkpoint of this project"),
        "predict": ([f"ckpt_path={bare}", f"inputs=[{tmp}]", run], "not a checkpoint of this project"),
        "export": ([f"ckpt_path={CKPT}", "format=tflite", run], "format='tflite' must be one of ['onnx', 'hf']"),
        "visualize": ([f"ckpt_path={CKPT}", f"videos=[{tmp / 'none.mp4'}]", run], "does not exist"),
        "convert": ([str(CKPT), "--out", str(tmp / "x.ckpt"), "--classes", str(tmp / "none.txt")],
                    "--classes"),
        "ensemble": ([str(tmp / "none.npz")], "no such scores file"),
        "zoo": (["eval", "official_sthv1_8f", f"ckpt={tmp / 'none.pth.tar'}"], "no such file"),
    }


@pytest.mark.parametrize("app", ["eval", "predict", "export", "visualize", "convert", "ensemble", "zoo"])
def test_a_refused_input_is_one_message_and_exit_2(app, tmp_path, bare, monkeypatch, capsys, caplog):
    args, message = cases(tmp_path, bare)[app]
    main = importlib.import_module(f"tanet_lightning.{app}").main
    monkeypatch.setattr(sys, "argv", [f"tanet-{app}", *args])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    # a fresh process's logging: an earlier in-process Hydra app left handlers on streams pytest has closed
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    with caplog.at_level(logging.ERROR, logger="tanet_lightning"), pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    assert exit_.value.code == 2
    assert message in caplog.text + out.err + out.out
    assert "Traceback" not in out.err + out.out


def test_every_application_is_a_console_script_and_a_module():
    scripts = (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    for app in ("eval", "predict", "export", "visualize", "convert", "ensemble", "zoo"):
        assert f'tanet-{app} = "tanet_lightning.{app}:main"' in scripts.splitlines()
        source = (ROOT / "src" / "tanet_lightning" / f"{app}.py").read_text()
        assert 'if __name__ == "__main__":\n    main()' in source
        assert "SystemExit(2)" not in source  # the one handler decides the exit status
