"""The LightningModule's recipe: parameter groups and lr multipliers on the optimizer's own settings,
metrics as Lightning computes them, label smoothing, probability view averaging."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from tanet_lightning.eval import evaluate
from tanet_lightning.train import train
from tanet_lightning.training.module import accuracy_metrics, average_views


def build(make_cfg, overrides=()):
    cfg = make_cfg(list(overrides))
    return instantiate(cfg.model, num_classes=8, optimizer=instantiate(cfg.optimizer)), cfg


def groups_by_name(optimizer) -> dict[str, dict]:
    return {g["name"]: g for g in optimizer.param_groups}


def test_param_groups_follow_the_reference_recipe(make_cfg):
    model, _ = build(make_cfg, ["optimizer=sgd", "model.fc_lr_mult=5"])
    groups = groups_by_name(model.configure_optimizers())
    # every trainable parameter in exactly one group
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.net.parameters() if p.requires_grad) and len(set(ids)) == len(ids)
    assert groups["fc_weight"]["params"] == [model.net.fc.weight] and groups["fc_bias"]["params"] == [model.net.fc.bias]
    assert all(p.ndim <= 1 for p in groups["no_decay"]["params"]) and all(p.ndim > 1 for p in groups["decay"]["params"])
    # conf/optimizer/sgd.yaml: lr 0.01, weight decay 1e-4, none on BN/biases; classifier x5, its bias x10
    assert {k: (g["lr"], g["weight_decay"]) for k, g in groups.items()} == {
        "decay": (0.01, 1e-4), "no_decay": (0.01, 0.0), "fc_weight": (0.05, 1e-4), "fc_bias": (0.1, 0.0)}
    assert all(g["momentum"] == 0.9 for g in groups.values())


def test_optimizer_without_lr_or_decay_uses_its_own_defaults(make_cfg):
    """A yaml that leaves lr / weight_decay out gets torch's AdamW defaults (1e-3, 0.01), not 0.01 / 0."""
    model, cfg = build(make_cfg, ["optimizer=adamw", "~optimizer.lr", "~optimizer.weight_decay",
                                  "model.fc_lr_mult=5"])
    optimizer = model.configure_optimizers()
    assert "lr" not in cfg.optimizer and "weight_decay" not in cfg.optimizer
    groups = groups_by_name(optimizer)
    assert {k: (g["lr"], g["weight_decay"]) for k, g in groups.items()} == {
        "decay": (1e-3, 1e-2), "no_decay": (1e-3, 0.0), "fc_weight": (5e-3, 1e-2), "fc_bias": (1e-2, 0.0)}


def test_label_smoothing_reaches_the_loss(make_cfg):
    batch = {"video": torch.randn(2, 4, 3, 32, 32), "label": torch.tensor([1, 5])}
    losses = {}
    for eps in (0.0, 0.2):
        model, _ = build(make_cfg, [f"model.label_smoothing={eps}"])
        torch.manual_seed(0)
        model.eval()  # no dropout/BN updates: the same logits for both losses
        with torch.no_grad(), pytest.warns(UserWarning, match="self.log"):  # no trainer attached here
            losses[eps] = model.training_step(batch, 0)
            logits = model(batch["video"])
        torch.testing.assert_close(losses[eps], F.cross_entropy(logits, batch["label"], label_smoothing=eps))
    assert not torch.isclose(losses[0.0], losses[0.2])


@pytest.mark.heavy
def test_logged_metrics_are_the_epoch_metrics_and_lr_is_scaled(make_cfg):
    """Two epochs, uneven validation batches (8 videos in batches of 3): val/top1 and val/mean_class_acc
    equal the metrics of the final weights over the whole split, val/top1_best the best epoch, and the
    scheduler starts from the optimizer's lr x global batch / model.lr_scale_base_batch x each group's mult."""
    cfg = make_cfg(["trainer.max_epochs=2", "trainer.limit_train_batches=2", "test=false", "data.batch_size=3",
                    "model.lr_scale_base_batch=6", "model.fc_lr_mult=5", "optimizer.lr=0.004"])
    metrics, objects = train(cfg)
    dm, model, trainer = objects["datamodule"], objects["model"].eval(), objects["trainer"]
    expected = accuracy_metrics(dm.num_classes, "val/")
    with torch.no_grad():
        for batch in dm.val_dataloader():
            batch = dm.on_after_batch_transfer(batch, 0)
            expected.update(model(batch["video"]), batch["label"])
    for key, value in expected.compute().items():
        assert metrics[key] == pytest.approx(value.item(), abs=1e-6), key
    rows = list(csv.DictReader(next(Path(cfg.paths.output_dir).rglob("metrics.csv")).open()))
    val = [float(r["val/top1"]) for r in rows if r.get("val/top1")]
    train_top1 = [float(r["train/top1"]) for r in rows if r.get("train/top1")]
    assert len(val) == 2 and len(train_top1) == 2
    assert metrics["val/top1_best"] == pytest.approx(max(val))
    initial = {g["name"]: g["initial_lr"] for g in trainer.optimizers[0].param_groups}
    assert initial == pytest.approx({"decay": 0.002, "no_decay": 0.002, "fc_weight": 0.01, "fc_bias": 0.02})


@pytest.mark.heavy
def test_view_average_prob_is_the_mean_softmax_of_the_views(make_cfg):
    _, objects = train(make_cfg(["trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "test=false"]))
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    cfg = make_cfg([f"ckpt_path={ckpt}", "data.test_views=2x1", "view_average=prob"], name="eval")
    metrics, objects = evaluate(cfg)
    with np.load(Path(cfg.paths.output_dir) / "scores.npz") as f:
        scores, video_idx, labels = f["scores"], f["video_idx"], f["labels"]
    dm, model = objects["datamodule"], objects["model"].eval()
    assert model.hparams.view_average == "prob"
    views = {}
    with torch.no_grad():
        for item in dm.datasets["test"]:
            video = dm.on_after_batch_transfer({"video": item["video"].unsqueeze(0)}, 0)["video"]
            views.setdefault(int(item["video_idx"]), []).append(model(video)[0].softmax(-1))
    for i, v in enumerate(video_idx):
        assert len(views[int(v)]) == 2
        mean_prob = torch.stack(views[int(v)]).mean(0)
        torch.testing.assert_close(torch.from_numpy(scores[i]), mean_prob, atol=1e-5, rtol=1e-4)
    assert metrics["test/top1"] == pytest.approx((scores.argmax(1) == labels).mean(), abs=1e-6)


def test_average_views_prob_and_logits_can_disagree():
    """Two views of one video where the mean logit and the mean probability pick different classes."""
    logits = torch.tensor([[5.0, 0.0, 4.0], [0.0, 4.0, 0.0]])
    video, view, label = torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([1, 1])
    by_logits = average_views(video, view, label, logits, "logits")["scores"]
    by_prob = average_views(video, view, label, logits, "prob")["scores"]
    torch.testing.assert_close(by_logits, logits.mean(0, keepdim=True))
    torch.testing.assert_close(by_prob, logits.softmax(-1).mean(0, keepdim=True))
    assert by_logits.argmax().item() == 0 and by_prob.argmax().item() == 1
