"""LightningModule: the paper's optimisation recipe, top-1/top-5/mean-class metrics, multi-view testing.

Batches are dicts from ``tanet_lightning.data``: ``video`` (B, T, 3, H, W), already normalised on the
device; ``label`` (B,); for testing also ``video_idx`` and ``view_idx`` (one item per clip x crop view).
"""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torchmetrics import MaxMetric

from ..base.errors import CheckpointError, ConfigError, UserError
from ..base.metrics import accuracy_metrics
from ..models.convert import load_init_weights
from ..models.fit import check_clip_length, check_fits
from ..models.load import NET_ARGS, Checkpoint
from ..models.temporal import TAM_FAMILY
from ..models.video import create_video_model
from .sync_bn import convert_sync_batchnorm

__all__ = ["MECHANICS", "TAM_FAMILY", "TrainingDiverged", "VideoClassificationModule", "accuracy_metrics",
           "average_views", "instantiate_model"]


class TrainingDiverged(UserError):
    """The training loss became inf or nan: every later number of the run would be meaningless. The run
    ends ``failed`` (its run.json says at which step), with the settings to change named."""


class VideoClassificationModule(L.LightningModule):
    """The network is ``create_video_model(num_classes=..., **net)``: every ``model.*`` key that is not a
    training mechanic below goes to it by name (``backbone``, ``temporal``, ``tam``, ``num_frames``, ...).
    The saved hyper-parameters stay flat, as they always were, so every checkpoint rebuilds its network.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        fc_lr_mult: float = 5.0,
        lr_scale_base_batch: int | None = None,
        view_average: str = "logits",
        label_smoothing: float = 0.0,
        compile: bool = False,
        channels_last: bool = False,
        init_from: str | None = None,
        freeze_bn: bool = False,
        sync_bn: bool = False,
        **net: Any,
    ):
        super().__init__()
        if view_average not in ("logits", "prob"):
            raise ConfigError(f"model.view_average must be 'logits' or 'prob', got {view_average!r}")
        unknown = sorted(set(net) - set(NET_ARGS))
        if unknown:
            raise ConfigError(f"model.{unknown[0]} is not a model setting: the network takes "
                              f"{sorted(k for k in NET_ARGS if k != 'num_classes')}, training takes "
                              f"{sorted(k for k in MECHANICS)}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.net = create_video_model(num_classes=num_classes, **net)
        self.net.channels_last = channels_last
        if freeze_bn:  # TSN's partial BN: every BatchNorm2d but the first keeps its ImageNet/pretrained statistics
            for bn in frozen_batchnorms(self.net):
                bn.requires_grad_(False)
        if channels_last:  # per conv: Module.to(memory_format=channels_last) refuses the 5-D weights of a Conv3d
            for m in self.net.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)):
                    m.to(memory_format=torch.channels_last if m.weight.dim() == 4 else torch.channels_last_3d)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.train_metrics = accuracy_metrics(num_classes, "train/")
        self.val_metrics = accuracy_metrics(num_classes, "val/")
        self.test_metrics = accuracy_metrics(num_classes, "test/")
        self.val_top1_best = MaxMetric()
        self.val_top1_best.persistent(True)  # in checkpoints, so a resumed run keeps its best so far
        self._test_outputs: list[tuple[torch.Tensor, ...]] = []
        self._losses: list[tuple[torch.Tensor, tuple[int, int, int]]] = []  # not yet checked (watch_loss)
        self._val_losses: list[torch.Tensor] = []
        self.test_results: dict[str, torch.Tensor] = {}
        self.scores_path: Path | None = None  # set by eval: rank 0 writes the per-video scores there

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, *, num_frames: int, class_names: Sequence[str] | None,
                        num_classes: int | None = None, protocol: dict | None = None,
                        **mechanics: Any) -> VideoClassificationModule:
        """The module of a project checkpoint, ready to test: its saved settings (``mechanics`` override
        them, e.g. ``view_average``), its network weights, its classifier rows in the data's class order.
        The data's fit (T, classes) is checked first (``models.fit.check_fits``)."""
        match = check_fits(ckpt, num_frames=num_frames, class_names=class_names, num_classes=num_classes,
                           protocol=protocol, use="eval")
        hparams = {k: v for k, v in ckpt.hparams.items() if k in MECHANICS}
        module = cls(**{**hparams, **mechanics}, **ckpt.net_kwargs)
        ckpt.load_weights(module.net)
        if match.order is not None:
            module.net.reorder_classes(match.order)
        return module

    def configure_model(self) -> None:
        # SyncBN under DDP (also CPU/gloo, where torch's SyncBatchNorm refuses to run): batch statistics
        # over the global batch. Converted here, not by trainer.sync_batchnorm, for that CPU support.
        if self.hparams.sync_bn and self._trainer is not None and self.trainer.world_size > 1 \
                and not getattr(self, "_sync_bn", False):
            self.net = convert_sync_batchnorm(self.net, self.trainer.strategy.root_device.type)
            self._sync_bn = True
        # nn.Module.compile compiles in place, so state-dict keys (and checkpoints) stay uncompiled
        if self.hparams.compile and not getattr(self, "_compiled", False):
            self.net.backbone.compile()
            self._compiled = True

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video)

    def setup(self, stage: str) -> None:
        # before Lightning restores a `ckpt_path` (which then wins), so resuming a fine-tune works
        if stage == "fit" and self.hparams.get("init_from"):
            dm = self.trainer.datamodule if self._trainer is not None else None
            load_init_weights(self.net, self.hparams.init_from, getattr(dm, "class_names", None))

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.hparams.get("freeze_bn"):
            for bn in frozen_batchnorms(self.net):
                bn.eval()  # running statistics stay as loaded
        return self

    # --- training / validation -----------------------------------------------------------------
    # Metrics are logged as torchmetrics objects: Lightning computes them over the epoch, syncs them
    # across processes and resets them.
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["video"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        self.watch_loss(loss, batch_idx)
        self.train_metrics.update(logits.detach(), batch["label"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(logits))
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def watch_loss(self, loss: torch.Tensor, batch_idx: int) -> None:
        """Raise TrainingDiverged once a training loss is not finite, naming the step.

        Reading a CUDA tensor's value waits for the GPU, so on an accelerator (or with several processes,
        which must agree to stop together) the losses are kept on their device and looked at every
        ``trainer.log_every_n_steps`` steps and at the last batch of an epoch (before its checkpoint): the
        step named is still the first bad one; the steps between train on, wasted but never saved. One
        process on the CPU: every step, before its backward pass.
        """
        trainer = self._trainer
        where = (trainer.global_step, trainer.current_epoch, batch_idx) if trainer is not None else (0, 0, batch_idx)
        self._losses.append((loss.detach(), where))
        every = 1 if trainer is None or (loss.device.type == "cpu" and trainer.world_size == 1) \
            else (trainer.log_every_n_steps or 1)
        if len(self._losses) >= every or trainer is not None and trainer.is_last_batch:
            self._check_losses()

    def _check_losses(self) -> None:
        losses, self._losses = self._losses, []
        finite = torch.isfinite(torch.stack([loss for loss, _ in losses]))
        bad = not bool(finite.all())
        if self._trainer is not None and self.trainer.world_size > 1:  # every process stops, or none
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        first = int((~finite).nonzero()[0, 0]) if not bool(finite.all()) else None
        if first is None:
            step = f"on another process, at a step from global step {losses[0][1][0]} to {losses[-1][1][0]}"
        else:
            (value, (global_step, epoch, batch_idx)) = losses[first]
            step = f"{float(value)} at global step {global_step} (epoch {epoch}, batch {batch_idx})"
        raise TrainingDiverged(f"the training loss became {step}: the run diverged; {self._divergence_fix()}")

    def _check_val_losses(self) -> None:
        """The last training steps may leave non-finite weights that no later training loss shows (the
        epoch's last step): the validation loss does, before the epoch's checkpoint is written."""
        losses, self._val_losses = self._val_losses, []
        bad = bool(losses) and not bool(torch.isfinite(torch.stack(losses)).all())
        if self._trainer is not None and self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            trainer = self._trainer
            when = (f"at epoch {trainer.current_epoch} (after global step {trainer.global_step})"
                    if trainer is not None else "")
            raise TrainingDiverged(f"the validation loss became non-finite {when}: the weights diverged; "
                                   f"{self._divergence_fix()}")

    def _divergence_fix(self) -> str:
        if self._trainer is None or not self.trainer.optimizers:
            return "lower optimizer.lr"
        lr = self.trainer.optimizers[0].defaults.get("lr")
        clip, precision = self.trainer.gradient_clip_val, self.trainer.precision
        fixes = [f"lower optimizer.lr (now {lr:g})" if isinstance(lr, float) else "lower optimizer.lr",
                 "set trainer.gradient_clip_val (the paper's: 20)" if not clip else
                 f"lower trainer.gradient_clip_val (now {clip:g})"]
        if precision not in ("32-true", "32", 32):
            fixes.append(f"train with trainer.precision=32-true (now {precision})")
        return ", or ".join(fixes) + " (a new run: the changed value names a new run directory)"

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        batch = only_valid(batch)  # unreadable videos are counted by the data, never scored
        if len(batch["label"]) == 0:
            return
        logits = self(batch["video"])
        loss = F.cross_entropy(logits, batch["label"])
        self._val_losses.append(loss.detach())  # looked at once, at the epoch's end
        self.val_metrics.update(logits, batch["label"])
        self.log("val/loss", loss, sync_dist=True, batch_size=len(logits))
        self.log_dict(self.val_metrics, prog_bar=True, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        self._check_val_losses()
        if not self.trainer.sanity_checking and self.val_metrics["top1"].update_called:
            self.val_top1_best.update(self.val_metrics["top1"].compute())  # synced; Lightning resets it after
            self.log("val/top1_best", self.val_top1_best.compute())

    # --- multi-view testing ----------------------------------------------------------------------
    def test_step(self, batch: dict, batch_idx: int) -> None:
        logits = self(batch["video"]).float()
        valid = batch.get("valid", torch.ones_like(batch["label"], dtype=torch.bool))
        self._test_outputs.append((batch["video_idx"], batch["view_idx"], batch["label"], logits, valid))

    def on_test_epoch_end(self) -> None:
        local = [torch.cat(parts) for parts in zip(*self._test_outputs)]
        self._test_outputs.clear()
        # DistributedSampler gives every rank the same number of items (padding with repeats), so the
        # gathered tensors line up; repeats are removed by (video, view) below. Views of unreadable
        # videos are dropped only after the gather, which needs equal sizes on every rank.
        if self.trainer.world_size > 1:
            local = [self.all_gather(t).flatten(0, 1) for t in local]
        valid = local.pop().bool()
        video_idx, view_idx, labels, logits = (t[valid] for t in local)
        self.test_results = average_views(video_idx, view_idx, labels, logits, self.hparams.view_average)
        scores, targets = self.test_results["scores"], self.test_results["labels"]
        self.test_metrics.to(scores.device)
        metrics = self.test_metrics(scores, targets)
        self.test_metrics.reset()
        metrics["test/num_videos"] = torch.tensor(float(len(targets)))
        metrics["test/num_views"] = torch.tensor(float(len(view_idx.unique())))
        self.log_dict(metrics, sync_dist=False, rank_zero_only=False)  # identical on every rank
        # written here, not by the caller: under ddp_spawn only the worker processes hold the results
        if self.scores_path is not None and self.trainer.is_global_zero:
            save_scores(self.scores_path, self.test_results, self.trainer.datamodule)

    # --- optimisation ----------------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        """The reference recipe: no decay on BN and biases; classifier weight lr x fc_lr_mult, bias x2 that.

        Each group carries its ``lr_mult``; the lr itself and the weight decay of the decayed groups are
        the optimizer's own settings (``configure_optimizers``), so nothing here can disagree with them.
        """
        groups = {k: [] for k in ("decay", "no_decay", "fc_weight", "fc_bias")}
        for name, p in self.net.named_parameters():
            if not p.requires_grad:
                continue
            if name.startswith("fc."):
                groups["fc_weight" if name.endswith("weight") else "fc_bias"].append(p)
            elif p.ndim <= 1:  # BN weights/biases and every bias
                groups["no_decay"].append(p)
            else:
                groups["decay"].append(p)
        mult = self.hparams.fc_lr_mult
        lr_mult = {"decay": 1.0, "no_decay": 1.0, "fc_weight": mult, "fc_bias": 2 * mult}
        no_decay = {"weight_decay": 0.0}
        return [{"params": ps, "name": k, "lr_mult": lr_mult[k], **(no_decay if k in ("no_decay", "fc_bias") else {})}
                for k, ps in groups.items() if ps]

    def scaled_lr(self, lr: float) -> float:
        """Linear scaling (lr x global batch / base batch) when ``lr_scale_base_batch`` is set."""
        base = self.hparams.lr_scale_base_batch
        if not base:
            return lr
        dm = self.trainer.datamodule
        global_batch = dm.batch_size * self.trainer.world_size * self.trainer.accumulate_grad_batches
        return lr * global_batch / base

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ValueError("no optimizer configured: set the `optimizer` config group (e.g. optimizer=sgd)")
        # the optimizer resolves its own defaults (the yaml's values, else torch's): the groups' lr
        # multipliers scale that lr, and decayed groups keep its weight decay
        factory = self.optimizer_factory
        if getattr(factory, "keywords", {}).get("fused") and self._trainer is not None \
                and str(self.trainer.precision).endswith("-mixed") and self.trainer.gradient_clip_val:
            # fp16's GradScaler unscales inside a fused step, too late for gradient clipping; Lightning's
            # mixed-precision plugin refuses clipping with any fused optimizer (bf16 too): the unfused
            # step there (on GPUs torch's default is the multi-tensor one, nearly as fast)
            factory = functools.partial(factory, fused=False)
        optimizer = factory(self.param_groups())
        if "lr" not in optimizer.defaults:
            raise ValueError(f"optimizer {type(optimizer).__name__} has no `lr` setting: the lr multipliers "
                             "(model.fc_lr_mult) need one; choose another optimizer")
        lr = self.scaled_lr(optimizer.defaults["lr"])
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                         "interval": "epoch"}}

    # --- checkpoints -----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # what predict needs besides the weights: class names and the test-time data protocol
        dm = self._trainer.datamodule if self._trainer is not None else None
        if dm is not None and hasattr(dm, "test_protocol"):
            checkpoint["data_config"] = dm.test_protocol().to_dict()
            checkpoint["class_names"] = list(dm.class_names)
        if dm is not None and hasattr(dm, "fingerprints"):  # which videos: eval compares them (data/fingerprint.py)
            fingerprints = dm.fingerprints()
            checkpoint["data_fingerprint"] = {s: fp.to_dict() for s, fp in fingerprints.items()}
            checkpoint["data_video_ids"] = {s: fp.packed for s, fp in fingerprints.items()}
        # the global RNGs drive shuffling and augmentation: a resumed run continues the same streams
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        numpy_state = [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]  # weights-only safe
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "rng_states" in checkpoint and self._trainer is not None and self._trainer.state.fn == "fit":
            torch.set_rng_state(checkpoint["rng_states"]["torch"])
            kind, keys, pos, has_gauss, gauss = checkpoint["rng_states"]["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(checkpoint["rng_states"]["python"])
        saved = checkpoint.get("hyper_parameters", {}).get("num_frames")
        if saved is not None:
            check_clip_length(self.net.num_frames, saved, what=f"this model (T={self.net.num_frames})",
                              fix=f"the checkpoint was trained with T={saved}: set data.num_frames={saved}",
                              error=CheckpointError)


# the module's own settings (training mechanics); every other model.* key builds the network
MECHANICS = tuple(p for p in inspect.signature(VideoClassificationModule.__init__).parameters
                  if p not in ("self", "net", "num_classes", "optimizer", "scheduler"))


def instantiate_model(model: DictConfig, **kwargs: Any) -> VideoClassificationModule:
    """The LightningModule of ``cfg.model``; an argument its constructors refuse (a position a block does
    not have, a beta that does not divide the channels...) is a ConfigError with the constructor's message."""
    try:
        return instantiate(model, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, ConfigError):
            raise e.__cause__ from None
        if isinstance(e.__cause__, ValueError):
            raise ConfigError(f"model: {e.__cause__}") from None
        raise


def only_valid(batch: dict) -> dict:
    """The items of a batch whose video could be read (datasets mark the others ``valid=False``)."""
    valid = batch.get("valid")
    if valid is None or bool(valid.all()):
        return batch
    return {k: (v[valid] if isinstance(v, torch.Tensor) and len(v) == len(valid) else v) for k, v in batch.items()}


def frozen_batchnorms(net: torch.nn.Module) -> list[torch.nn.Module]:
    """TSN partial BN (`model.freeze_bn`): every BatchNorm2d of the backbone except the first."""
    return [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)][1:]


def save_scores(path: Path, results: dict[str, torch.Tensor], datamodule: Any = None) -> None:
    """scores.npz: video_idx, labels, view-averaged scores, num_views (+ video paths when known)."""
    arrays = {k: v.cpu().numpy() for k, v in results.items()}
    names = datamodule.video_names("test") if hasattr(datamodule, "video_names") else None
    if names is not None:
        arrays["video_names"] = np.asarray([names[i] for i in arrays["video_idx"]])
    np.savez(path, **arrays)


def average_views(
    video_idx: torch.Tensor, view_idx: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, mode: str
) -> dict[str, torch.Tensor]:
    """One score vector per video: the mean over its distinct views of logits (official) or softmax (mm)."""
    key = video_idx.long() * (int(view_idx.max()) + 1) + view_idx.long()
    key, first = _unique_first(key)  # drop the DistributedSampler's repeats
    video_idx, labels = video_idx[first], labels[first]
    scores = logits[first] if mode == "logits" else logits[first].softmax(-1)
    videos, inverse = video_idx.unique(sorted=True, return_inverse=True)
    summed = torch.zeros(len(videos), scores.shape[1], dtype=scores.dtype, device=scores.device)
    summed.index_add_(0, inverse, scores)
    counts = torch.bincount(inverse, minlength=len(videos)).to(scores.dtype)
    video_labels = torch.empty_like(videos)
    video_labels[inverse] = labels.to(videos.dtype)
    return {"video_idx": videos, "labels": video_labels, "scores": summed / counts[:, None],
            "num_views": counts}


def _unique_first(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique keys and the index of each key's first occurrence."""
    uniq, inverse = key.unique(sorted=True, return_inverse=True)
    first = torch.full((len(uniq),), len(key), dtype=torch.long, device=key.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(key), device=key.device), reduce="amin")
    return uniq, first

