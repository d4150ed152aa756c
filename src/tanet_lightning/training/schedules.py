"""Learning-rate schedules the config's ``scheduler`` group builds that torch has no single class for.

``warmup_cosine``: the adapter papers' schedule (ST-Adapter, AIM): a linear warm-up from 0, then a cosine
decay to 0 at ``max_epochs``. They step it per iteration; the LightningModule steps schedulers per epoch,
so each epoch gets the schedule's value at its midpoint (its per-iteration mean, to first order): with
2 warm-up epochs that is 0.25 and 0.75 of the lr, then the cosine.
"""

from __future__ import annotations

import functools
import math

import torch


def warmup_cosine_factor(epoch: int, warmup_epochs: float, max_epochs: int) -> float:
    """The lr factor of ``epoch`` (0-based): the warm-up line or the cosine, at the epoch's midpoint."""
    t = epoch + 0.5
    if t < warmup_epochs:
        return t / warmup_epochs
    span = max(max_epochs - warmup_epochs, 1e-9)
    return 0.5 * (1.0 + math.cos(math.pi * min((t - warmup_epochs) / span, 1.0)))


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_epochs: float, max_epochs: int
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    if warmup_epochs < 0 or max_epochs < 1 or warmup_epochs >= max_epochs:
        raise ValueError(f"scheduler: warmup_epochs={warmup_epochs} must lie in [0, max_epochs={max_epochs})")
    factor = functools.partial(warmup_cosine_factor, warmup_epochs=warmup_epochs, max_epochs=max_epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
