"""A callback for the shard tests, loaded by a training run (``+callbacks.stop_store._target_=shard_probe.StopStore``):
``StopStore`` calls ``STOP`` (set by the test: the object store's ``stop``) at the end of the first training
batch, so the next batch's samples must come from a store that is no longer there."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L

STOP: Callable[[], None] | None = None


class StopStore(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        global STOP
        if STOP is not None and batch_idx == 0:
            STOP()
            STOP = None
