"""What goes to the experiment loggers besides the step metrics, and W&B run hygiene across sweep jobs."""

from __future__ import annotations

import torch


def log_config(loggers: list, resolved: dict, model: torch.nn.Module | None = None) -> None:
    params = dict(resolved)
    if model is not None:
        params["params/total"] = sum(p.numel() for p in model.parameters())
        params["params/trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for lg in loggers:
        lg.log_hyperparams(params)


def log_summary(loggers: list, values: dict[str, float]) -> None:
    """Values measured once per run (parameters, GFLOPs) into the W&B run summary, where the sweep's
    W&B report charts them per run; the CSV/TensorBoard loggers have them in metrics.json already."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.summary.update(values)


def finish_wandb() -> None:
    """End the W&B run of this job so that the next job of a sweep does not append to it."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish()
