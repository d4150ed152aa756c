"""User errors: mistakes a user can fix, reported as one message and exit status 2, never a traceback.

Every layer raises a subclass of ``UserError`` for input it refuses (a config value, a data file, a
checkpoint, a run directory's state); every entry point wraps its work in ``handle_user_errors`` so the
message, the exit status and ``HYDRA_FULL_ERROR=1`` (show the traceback anyway) behave the same everywhere.
Bugs are not user errors: they keep their traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("tanet_lightning")

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Something the user gave cannot work; the message names it (key, file:line) and says what to change."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, *args):
        # raised in a DataLoader worker, torch re-raises it in the run's process as the same class with the message
        # "Caught <class> in DataLoader worker process 0.\nOriginal Traceback ...\n<module>.<class>: <message>":
        # keep the message, as the user would have read it raised in the main process
        if len(args) == 1 and isinstance(args[0], str) and args[0].startswith("Caught ") \
                and "Original Traceback" in args[0]:
            args = (re.split(rf"\n[\w.]*\b{type(self).__name__}: ", args[0])[-1].rstrip(),)
        super().__init__(*args)


# ValueError as a second base: callers (and users' scripts) that caught ValueError before keep working
class ConfigError(UserError, ValueError):
    """A configuration value or combination that cannot work, found before any data is read or step taken."""


class DataError(UserError, ValueError):
    """A dataset, annotation file or video folder that does not match its format or the run's needs."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read, mapped, or used with the given model and data."""


class RunStateError(UserError):
    """A run directory whose state forbids what was asked (a finished run, another config, a live run)."""


F = TypeVar("F", bound=Callable)


def handle_user_errors(fn: F) -> F:
    """Run ``fn``; a ``UserError`` is logged as its message and ends the process with its exit code.

    ``HYDRA_FULL_ERROR=1`` re-raises it, traceback included (the same switch Hydra uses for its own).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            if not logging.getLogger().handlers:  # argparse entry points configure no logging
                print(f"error: {e}", file=sys.stderr)
            else:
                log.error("%s", e)
            raise SystemExit(e.exit_code) from None

    return wrapper  # type: ignore[return-value]
