"""Shared fixtures: a tiny synthetic motion dataset (real mp4s, generated once) and composed configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

from tinyconf import TINY_RUN, TINY_SYNTHETIC, compose_config

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def tiny_synthetic() -> list[str]:
    return list(TINY_SYNTHETIC)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data directory for the session: the tiny synthetic set is generated on first use."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_cfg(tmp_path, data_dir, monkeypatch):
    """Configs composed in a fresh working directory (tmp_path) with the data under TANET_DATA_DIR:
    the defaults a user gets, no run-directory or paths.* overrides."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TANET_DATA_DIR", str(data_dir))
    for var in ("TANET_ROOT", "TANET_LOG_DIR"):
        monkeypatch.delenv(var, raising=False)

    def make(overrides: list[str] = (), name: str = "train", tiny: bool = True) -> DictConfig:
        defaults = [*TINY_SYNTHETIC, *(TINY_RUN if name == "train" else [])] if tiny else []
        return compose_config(name, [*defaults, *overrides])

    return make
