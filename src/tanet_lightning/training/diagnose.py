"""The temporal-reliance diagnostic (``+diagnose=time``): does a model use the order of its frames at all?

The same test clips are scored four ways: frames in order, reversed, shuffled (one fixed permutation,
the same for every video, neither the identity nor the reversal) and frozen (the middle frame, index
T // 2, repeated T times). The frame axis is reordered on the device after normalisation, per view,
so multi-view testing averages the reordered views exactly as it averages the ordered ones.

Logged beside the test metrics: ``time/top1_<order>``, ``time/drop_<order>`` (ordered minus it) and
``time/changed_<order>`` (the fraction of videos whose top-1 class differs from the ordered one).
A per-frame model with a mean over T (C2D, C2D + non-local) scores every order of the same frames
alike; a time-symmetric one (C2D-Pool) the reversed clip like the ordered one; a model that reads the
direction of motion (TAM) swaps the time-reversal pairs of the synthetic data when the clip is reversed.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch

from ..base.errors import ConfigError
from .module import average_views

__all__ = ["ORDERS", "TimeDiagnostic", "frame_indices", "metric_names", "orders_problem", "time_metrics",
           "time_table", "video_orders"]

ORDERS = ("ordered", "reversed", "shuffled", "frozen")


def metric_names(orders: Sequence[str] = ORDERS) -> list[str]:
    """The keys the diagnostic logs, in the order reports show them."""
    others = [o for o in orders if o != "ordered"]
    return ([f"time/top1_{o}" for o in ("ordered", *others)] + [f"time/drop_{o}" for o in others]
            + [f"time/changed_{o}" for o in others])


def orders_problem(orders: Sequence[str], num_frames: int) -> str | None:
    """What cannot work about these orders at this clip length (None: they can)."""
    if "shuffled" in orders and num_frames < 3:
        kept = [o for o in orders if o not in ("shuffled", "ordered")]
        return (f"T={num_frames} frames have no shuffle other than the order itself and its reversal: "
                f"give diagnose.orders=[{','.join(kept) or 'reversed,frozen'}] (or more frames)")
    return None


def shuffled_frames(num_frames: int, seed: int = 0) -> torch.Tensor:
    """One fixed permutation of T >= 3 frames that is neither the identity nor the reversal."""
    if problem := orders_problem(["shuffled"], num_frames):
        raise ConfigError(problem)
    g = torch.Generator().manual_seed(seed)
    ordered = torch.arange(num_frames)
    while True:  # for T >= 3 at least 4 of the T! permutations qualify: a few draws at most
        perm = torch.randperm(num_frames, generator=g)
        if not torch.equal(perm, ordered) and not torch.equal(perm, ordered.flip(0)):
            return perm


def frame_indices(order: str, num_frames: int, seed: int = 0) -> torch.Tensor:
    """Indices into a clip's T frames that give the clip in ``order``."""
    if order == "ordered":
        return torch.arange(num_frames)
    if order == "reversed":
        return torch.arange(num_frames).flip(0)
    if order == "shuffled":
        return shuffled_frames(num_frames, seed)
    if order == "frozen":
        return torch.full((num_frames,), num_frames // 2, dtype=torch.long)
    raise ValueError(f"unknown frame order {order!r}: one of {ORDERS}")


def time_metrics(preds: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """``time/*`` from each order's predicted classes (one per video, the same videos in the same order)."""
    top1 = {o: float((p == labels).float().mean()) for o, p in preds.items()}
    out = {f"time/top1_{o}": v for o, v in top1.items()}
    for o, p in preds.items():
        if o != "ordered":
            out[f"time/drop_{o}"] = top1["ordered"] - top1[o]
            out[f"time/changed_{o}"] = float((p != preds["ordered"]).float().mean())
    return {k: out[k] for k in metric_names(list(preds))}


def video_orders(probs: dict[str, torch.Tensor], class_names: Sequence[str]) -> dict[str, dict]:
    """One video's top class under each order (predict's ``time`` field): class, probability, and for the
    other orders whether the class changed from the ordered one."""
    best = {o: int(p.argmax()) for o, p in probs.items()}
    return {o: {"class": class_names[i], "prob": round(float(probs[o][i]), 6),
                **({} if o == "ordered" else {"changed": i != best["ordered"]})} for o, i in best.items()}


def time_table(videos: Sequence[tuple[str, dict[str, dict]]]) -> str:
    """predict's printout: each video's top class per order (* where it differs from the ordered one) and
    how many changed."""
    orders = list(videos[0][1])
    rows = [("video", *orders)] + [(path, *(t[o]["class"] + ("*" if t[o].get("changed") else "") for o in orders))
                                   for path, t in videos]
    widths = [max(len(r[i]) for r in rows) for i in range(len(orders) + 1)]
    changed = ", ".join(f"{o} {sum(t[o]['changed'] for _, t in videos)}/{len(videos)}" for o in orders[1:])
    return "\n".join("  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip() for r in rows) + \
        f"\npredictions that changed from the ordered frames: {changed}"


class TimeDiagnostic(L.Callback):
    """``+diagnose=time`` (conf/diagnose/time.yaml): during ``trainer.test`` every test batch is scored
    again under each order (``ordered`` always first: it is the reference); ``time/*`` is logged at the
    end of the test epoch. Costs one forward pass per order on top of the test's own."""

    def __init__(self, orders: Sequence[str] = ORDERS[1:], shuffle_seed: int = 0):
        unknown = [o for o in orders if o not in ORDERS]
        if unknown:
            raise ConfigError(f"diagnose.orders: {unknown[0]!r} is not a frame order; choose from {list(ORDERS[1:])}")
        self.orders = ("ordered", *dict.fromkeys(o for o in orders if o != "ordered"))
        self.shuffle_seed = shuffle_seed
        self._keys: list[tuple[torch.Tensor, ...]] = []  # per test batch: video_idx, view_idx, label, valid
        self._logits: list[torch.Tensor] = []

    def indices(self, num_frames: int) -> dict[str, torch.Tensor]:
        """Each order's frame indices for clips of ``num_frames``; a length they cannot work at is a ConfigError."""
        if problem := orders_problem(self.orders, num_frames):
            raise ConfigError(problem)
        return {o: frame_indices(o, num_frames, self.shuffle_seed) for o in self.orders}

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._keys.clear()
        self._logits.clear()

    @torch.no_grad()
    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch: dict,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        video = batch["video"]  # (B, T, 3, H, W), normalised: one item per view
        with trainer.precision_plugin.test_step_context():  # as the test step ran (autocast)
            logits = [pl_module(video[:, idx.to(video.device)]).float()
                      for idx in self.indices(video.shape[1]).values()]
        valid = batch.get("valid", torch.ones_like(batch["label"], dtype=torch.bool))
        self._keys.append((batch["video_idx"], batch["view_idx"], batch["label"], valid))
        self._logits.append(torch.stack(logits))  # (orders, B, classes)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._keys:
            return
        video_idx, view_idx, labels, valid = (torch.cat(parts) for parts in zip(*self._keys))
        logits = torch.cat(self._logits, dim=1)
        self._keys.clear()
        self._logits.clear()
        if trainer.world_size > 1:  # equal sizes on every rank (DistributedSampler), as the module gathers
            video_idx, view_idx, labels, valid = (pl_module.all_gather(t).flatten(0, 1)
                                                  for t in (video_idx, view_idx, labels, valid))
            logits = pl_module.all_gather(logits).transpose(0, 1).flatten(1, 2)
        valid = valid.bool()
        mode = pl_module.hparams.get("view_average", "logits")
        preds, targets = {}, None
        for order, order_logits in zip(self.orders, logits):
            res = average_views(video_idx[valid], view_idx[valid], labels[valid], order_logits[valid], mode)
            preds[order], targets = res["scores"].argmax(-1), res["labels"]
        metrics = time_metrics(preds, targets)
        pl_module.log_dict({k: torch.tensor(v) for k, v in metrics.items()}, sync_dist=False, rank_zero_only=False)
