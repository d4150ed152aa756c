"""Shared fixtures: a tiny synthetic motion dataset (real mp4s, generated once) and composed configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from launcher import Launcher
from tinyconf import TINY_RUN, TINY_SYNTHETIC, compose_config

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")

# Under xdist (`make test`: -n 2) every worker, and every process a test starts, gets its share of the
# cores: PyTorch's default of one thread per core in each of them would oversubscribe the CPU.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")):
    _share = max(1, len(os.sched_getaffinity(0)) // workers)
    os.environ["OMP_NUM_THREADS"] = str(_share)
    torch.set_num_threads(_share)


# Seconds per xdist unit (a test file, or a documented-commands workspace: one test class), the units over
# ~6 s, measured with `--durations=0` under `make test` on 2 cores (2026-12-04). Re-measure when a unit grows.
LONGEST = {
    "tests/test_documented_commands.py::TestReadmeRunOnACluster": 56,
    "tests/scale/test_scale_gpu_check.py": 41,
    "tests/test_documented_commands.py::TestReadmeAShortTour": 40,
    "tests/training/test_train.py": 34,
    "tests/config/test_schema.py": 30,
    "tests/models/test_insertion.py": 25,
    "tests/test_documented_commands.py::TestReadmeSearchHyperParametersAndTrackRuns": 22,
    "tests/data/test_data_synthetic_variants.py": 21,
    "tests/test_documented_commands.py::TestExperimentsBackbonesReproduce": 19,
    "tests/test_documented_commands.py::TestReadmeTwoCommandsOnAFreshMachine": 19,
    "tests/test_documented_commands.py::TestLauncher": 15,
    "tests/test_documented_commands.py::TestReadmeUseAPretrainedTanet": 13,
    "tests/data/test_prepare.py": 13,
    "tests/runs/test_run_directories.py": 13,
    "tests/test_documented_commands.py::TestExperimentsAblationAlphaBetaReproduce": 12,
    "tests/test_documented_commands.py::TestExperimentsAblationKernelReproduce": 12,
    "tests/scale/test_scale_precision.py": 10,
    "tests/test_documented_commands.py::TestExperimentsAblationStagesReproduce": 10,
    "tests/analysis/test_experiments.py": 9,
    "tests/test_documented_commands.py::TestExperimentsAblationPositionReproduce": 9,
    "tests/scale/test_scale_ddp.py": 9,
    "tests/test_documented_commands.py::TestReadmeYourOwnDatasetAtFullSpeed": 9,
    "tests/analysis/test_sweep_lifecycle.py": 8,
    "tests/runs/test_lifecycle.py": 7,
    "tests/analysis/test_wandb_report.py": 7,
    "tests/scale/test_scale_throughput.py": 6,
}


def pytest_collection_modifyitems(config, items):
    """The longest units first (LONGEST), then the documented commands, then the rest in file order: under
    `--dist loadscope --no-loadscope-reorder` each worker takes the next unit as it frees up, so the short
    files fill the end instead of a long one starting last."""

    def unit(item) -> str:  # what --dist loadscope keeps together: the test's class, else its file
        return item.nodeid.rsplit("::", 1)[0] if item.cls else item.nodeid.split("::")[0]

    # stable: the order within a unit stays
    items.sort(key=lambda item: (-LONGEST.get(unit(item), 0), not any(item.iter_markers("docs"))))


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> Path:
    """A directory all xdist workers of this session share (each worker's basetemp is a child of it);
    whatever several workers make there must be made under a file lock (ensure_synthetic takes one)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def default_data_dir(shared_dir) -> Path:
    """The data directory of the documented commands and of the tests of the default synthetic set (800
    videos, ~7 s of CPU to generate): generated once per session for all xdist workers, by whichever asks
    first (ensure_synthetic's file lock). Nothing may write into it but the generator."""
    path = shared_dir / "default-data"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def launcher():
    """One preloaded launcher (tests/launcher.py) per test process, started on first use, for every test that
    runs ``python -m tanet_lightning.<app>`` as a process: the imports (~5 s CPU) are paid once, not per
    command. None (plain subprocesses) with TANET_DOCS_SUBPROCESS=1."""
    if os.environ.get("TANET_DOCS_SUBPROCESS") == "1":
        yield None
        return
    server = Launcher({k: v for k, v in os.environ.items() if not k.startswith("TANET_")})
    yield server
    server.close()


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
