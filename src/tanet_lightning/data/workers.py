"""DataLoader workers leave a stop signal to the process that runs them.

A scheduler's SIGTERM (SLURM signals every process of the job step, ``timeout`` and ``kill -- -PGID`` the
whole process group) reaches the loader's workers as well as the run's process. PyTorch's worker handler
exits quietly on a SIGTERM from the worker's parent (the loader ending it) and dies of any other one, so
the run's process, which was about to stop at the end of its batch and save, instead fails with "DataLoader
worker ... killed by signal: Terminated". Here a worker keeps the first behaviour and ignores the second:
the run's process decides, and ends its workers itself. (Ctrl-C's SIGINT is already left to it: a worker
that gets a KeyboardInterrupt is let go by PyTorch's worker loop.)

Python's handlers cannot see who sent a signal, so the worker blocks SIGTERM and one thread reads the
sender's pid with ``sigwaitinfo``. Threads started later inherit the mask; in a fresh worker there are none
before ``worker_init_fn``.
"""

from __future__ import annotations

import os
import signal
import threading


def _exit_on_the_parents_sigterm(parent: int) -> None:
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
            os._exit(0)  # what PyTorch's own handler does for its loader's SIGTERM


def leave_sigterm_to_the_parent(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn``: this worker ends on its parent's SIGTERM only."""
    if not hasattr(signal, "sigwaitinfo"):  # macOS: PyTorch's behaviour stays
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    threading.Thread(target=_exit_on_the_parents_sigterm, args=(os.getppid(),), daemon=True,
                     name="sigterm-from-the-parent").start()
