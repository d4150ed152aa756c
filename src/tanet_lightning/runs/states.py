"""``run.json``, the record of what a run directory holds, and the states a run is in (``RunState``).

    running      a process is (or was, until it died without a word) writing the run
    interrupted  stopped by a signal (SIGTERM, Ctrl-C): resumes with ``ckpt_path=last``
    requeued     SLURM requeued it: the same command resumes it
    finished     metrics.json is final
    failed       an exception ended it (``reason`` says which)

run.json keeps the state as its plain string (``RunState`` is a ``str``): files of every version read alike.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

from ..base.errors import RunStateError
from .outputs import METRICS

STATE = "run.json"


class RunState(str, Enum):
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    REQUEUED = "requeued"
    FINISHED = "finished"
    FAILED = "failed"

    def __str__(self) -> str:  # the word itself in messages, on every Python (3.12 changed Enum's format)
        return self.value


STATES = tuple(s.value for s in RunState)


def read_state(out: Path) -> dict[str, Any] | None:
    """run.json with its ``state`` a ``RunState``, or what a directory of an older version holds
    (metrics.json: finished; checkpoints: interrupted); None for a directory that holds no run."""
    path = out / STATE
    if path.is_file():
        return _checked_record(path)
    if (out / METRICS).is_file():
        return {"state": RunState.FINISHED, "config": None}
    if (out / "checkpoints").is_dir():
        return {"state": RunState.INTERRUPTED, "config": None}
    return None


def _checked_record(path: Path) -> dict[str, Any]:
    """run.json as a dict with a known state, else one RunStateError naming the file, what is wrong and the fix."""
    try:
        text = path.read_text()
        record = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        problem = "is empty" if not text.strip() else f"is not valid JSON ({e}; truncated?)"
    else:
        if not isinstance(record, dict):
            problem = f"holds a JSON {type(record).__name__}, not the record of a run (an object)"
        elif "state" not in record:
            problem = "has no state"
        elif record["state"] not in STATES:
            problem = f"holds the state {record['state']!r}, not one of {', '.join(STATES)}"
        else:
            return {**record, "state": RunState(record["state"])}
    raise RunStateError(
        f"{path} {problem}: what this run directory holds is unknown, so nothing was done there. "
        f"overwrite=true deletes the run and starts again; or delete {path} to keep what the run saved (its "
        "checkpoints resume with ckpt_path=last; a metrics.json marks it finished)")
