"""run.json's states (runs/states.py ``RunState``), the job log that waits for the run directory's decision
(``RunLogFile``), and which process is rank 0 (``rank``)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import weakref

import pytest

from tanet_lightning.runs.lifecycle import Run, RunLogFile, RunState, read_state, release_logs


@pytest.mark.parametrize("state", ["running", "interrupted", "requeued", "finished", "failed"])
def test_a_run_json_of_plain_string_states_reads_and_is_written_back_the_same(tmp_path, state):
    (tmp_path / "run.json").write_text(json.dumps({"state": state, "config": {"a": 1}, "attempts": 2}))
    record = read_state(tmp_path)
    assert record["state"] is RunState(state) and record["state"] == state and f"{record['state']}" == state
    Run(tmp_path, record).write(reason="")
    assert json.loads((tmp_path / "run.json").read_text()) == {"state": state, "config": {"a": 1}, "attempts": 2,
                                                               "reason": ""}


def test_directories_of_older_versions_read_as_finished_or_interrupted(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text("{}")
    assert read_state(tmp_path / "old")["state"] is RunState.FINISHED
    (tmp_path / "stopped" / "checkpoints").mkdir(parents=True)
    assert read_state(tmp_path / "stopped")["state"] is RunState.INTERRUPTED


@pytest.fixture
def job_log():
    """The job log as Hydra's dictConfig makes it (conf/train.yaml: the class, a filename, a formatter), on
    the root logger as there; taken off again after the test."""
    made: list[RunLogFile] = []

    def make(path) -> RunLogFile:
        handler = RunLogFile(filename=str(path / "train.log"))
        handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
        logging.getLogger().addHandler(handler)
        made.append(handler)
        return handler

    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    yield make
    for handler in made:
        logging.getLogger().removeHandler(handler)
        handler.close()
    logging.getLogger().setLevel(level)


def test_the_job_log_waits_for_the_decision_then_writes_each_record(tmp_path, job_log):
    handler = job_log(tmp_path)
    log = logging.getLogger("tanet_lightning")
    log.info("before the decision")
    log.error("an error before it")  # no level writes early: the directory may yet be refused
    assert not (tmp_path / "train.log").exists()
    release_logs(tmp_path, write=True)
    assert (tmp_path / "train.log").read_text() == "[INFO] before the decision\n[ERROR] an error before it\n"
    log.info("after it")
    assert (tmp_path / "train.log").read_text().endswith("[INFO] after it\n")  # at once, not at the end
    handler.close()


def test_a_refused_job_writes_no_log_and_one_without_a_lifecycle_writes_it_at_the_end(tmp_path, job_log):
    refused = job_log(tmp_path / "refused")
    logging.getLogger("tanet_lightning").info("refused")
    release_logs(tmp_path / "refused", write=False)
    logging.getLogger("tanet_lightning").info("and after")
    refused.close()
    assert not (tmp_path / "refused").exists()

    other = job_log(tmp_path)  # e.g. `predict`: nothing calls release_logs
    logging.getLogger("tanet_lightning").info("predicted")
    logging.shutdown([weakref.ref(other.file), weakref.ref(other)])  # what the exit does (in order of making)
    assert (tmp_path / "train.log").read_text() == "[INFO] predicted\n"


@pytest.mark.heavy  # a fresh interpreter: Lightning reads the rank from the environment at import
def test_a_process_lightning_started_in_a_one_task_slurm_job_is_not_rank_0():
    """`srun --pty bash` then DDP: every process has SLURM_PROCID=0, Lightning gives rank 1 LOCAL_RANK=1."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK")}
    code = "from tanet_lightning.runs.lifecycle import rank; print(rank())"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "SLURM_PROCID": "0", "LOCAL_RANK": "1"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr[-2000:]
