"""DDP training on CPU processes (gloo): the same first step as one process with the global batch,
checkpoints and metrics written once, every test video counted once."""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tanet_lightning.train import train
from tanet_lightning.training.module import VideoClassificationModule
from tanet_lightning.training.sync_bn import CPUSyncBatchNorm

B = 3  # clips per rank


class FixedClips(Dataset):
    """2B fixed clips, no augmentation: rank r of 2 gets items r, r+2, ... (DistributedSampler without
    shuffling), one process with batch 2B gets all of them, so both see the same global batch."""

    def __init__(self, n: int = 2 * B):
        g = torch.Generator().manual_seed(0)
        self.video = torch.randn(n, 4, 3, 32, 32, generator=g)
        self.label = torch.randint(0, 8, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.video[i], "label": self.label[i]}


class FirstStepProbe(L.Callback):
    """Saves, per rank, the first step's loss (all ranks' mean), its gradients after DDP's all-reduce,
    and which BatchNorm class ran."""

    def __init__(self, out: Path):
        self.out, self.grads = out, {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.grads = {n: p.grad.detach().clone() for n, p in pl_module.net.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = trainer.strategy.reduce(outputs["loss"].detach(), reduce_op="mean")
        sync = any(isinstance(m, (CPUSyncBatchNorm, torch.nn.SyncBatchNorm)) for m in pl_module.modules())
        grads = {k: v.cpu() for k, v in self.grads.items()}
        stats = {k: v.cpu() for k, v in pl_module.net.named_buffers() if k.endswith(("running_mean", "running_var"))}
        torch.save({"loss": loss.cpu(), "grads": grads, "stats": stats, "sync_bn": sync},
                   self.out / f"rank{trainer.global_rank}_of_{trainer.world_size}.pt")


def first_step(tmp_path: Path, devices: int, batch_size: int, model: VideoClassificationModule,
               accelerator: str = "cpu") -> Path:
    out = tmp_path / f"w{devices}"
    out.mkdir()
    trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[FirstStepProbe(out)])
    loader = DataLoader(FixedClips(), batch_size=batch_size, shuffle=False)
    trainer.fit(model, train_dataloaders=loader)
    return out


def tiny_module(sync_bn: bool) -> VideoClassificationModule:
    torch.manual_seed(0)  # every call: the same initial weights
    return VideoClassificationModule(num_classes=8, num_frames=4, backbone="resnet18", temporal={"name": "tam"},
                                     dropout=0.0, sync_bn=sync_bn, optimizer=partial(torch.optim.SGD, lr=0.01))


@pytest.mark.heavy
@pytest.mark.parametrize("accelerator", ["cpu", pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="NCCL DDP needs 2 CUDA GPUs (this machine has fewer)")])])
def test_two_ranks_with_sync_bn_match_one_process_with_the_global_batch(tmp_path, accelerator, monkeypatch):
    """2 ranks (gloo on CPU, NCCL + torch's SyncBatchNorm on GPUs) x B clips == 1 process x 2B clips:
    first-step loss, every gradient and every BatchNorm running statistic (float32 sums in another
    order: 1e-4 of each gradient's scale; measured ~1e-6 on CPU)."""
    # TF32 convolutions would differ by more than the order of the sums; the variable reaches the
    # spawned ranks, where a torch.backends flag set here would not
    monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", "0")
    one = torch.load(first_step(tmp_path, 1, 2 * B, tiny_module(sync_bn=True), accelerator) / "rank0_of_1.pt")
    out = first_step(tmp_path, 2, B, tiny_module(sync_bn=True), accelerator)
    two = [torch.load(out / f"rank{r}_of_2.pt") for r in range(2)]
    assert not one["sync_bn"] and two[0]["sync_bn"] and two[1]["sync_bn"]  # SyncBN only where it syncs
    for rank in two:
        assert rank["loss"].item() == pytest.approx(one["loss"].item(), rel=1e-5)
        assert rank["grads"].keys() == one["grads"].keys()
        for name, g in one["grads"].items():
            err = (rank["grads"][name] - g).abs().max() / g.abs().max().clamp_min(1e-12)
            assert err <= 1e-4, (name, err.item())
        for name, v in one["stats"].items():  # running statistics (unbiased variance) of the global batch
            torch.testing.assert_close(rank["stats"][name], v, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_without_sync_bn_two_ranks_differ(tmp_path):
    """The control: per-rank BatchNorm statistics (B clips) give other gradients than 2B, so the
    equality above is SyncBN's doing, not a test that cannot fail."""
    one = torch.load(first_step(tmp_path, 1, 2 * B, tiny_module(sync_bn=False)) / "rank0_of_1.pt")
    two = torch.load(first_step(tmp_path, 2, B, tiny_module(sync_bn=False)) / "rank0_of_2.pt")
    g1, g2 = one["grads"]["backbone.conv1.weight"], two["grads"]["backbone.conv1.weight"]
    assert (g1 - g2).abs().max() > 1e-3 * g1.abs().max()


@pytest.mark.slow  # three rounds of 2 spawned processes (fit, best-checkpoint test): ~1 min
def test_ddp_cpu_trains_validates_tests_and_writes_once(make_cfg):
    """`trainer=ddp_cpu` through the application: fit + validate + multi-view test on 2 ranks."""
    cfg = make_cfg(["trainer=ddp_cpu", "trainer.max_epochs=2", "model.sync_bn=true", "data.batch_size=4",
                    "data.test_views=1x3", "data.test_batch_size=5"])
    metrics, objects = train(cfg)
    out = Path(cfg.paths.output_dir)
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert "last.ckpt" in ckpts and len(ckpts) == 2, ckpts  # best + last, no rank-suffixed duplicates
    # 8 test videos x 3 views = 24 items over 2 ranks x batches of 5: the sampler pads with repeats,
    # which the gathered multi-view average drops
    assert metrics["test/num_videos"] == 8 and metrics["test/num_views"] == 3
    written = json.loads((out / "metrics.json").read_text())
    assert written["test/num_videos"] == 8 and "val/top1_best" in written and "train/loss_epoch" in written
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    # rank 0 logs: one row per epoch (24 training videos / (2 ranks x 4) = 3 steps each), one test row
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    epochs = [(r["epoch"], r["step"]) for r in rows if r["train/loss_epoch"]]
    assert epochs == [("0", "2"), ("1", "5")]
    assert len([r for r in rows if r["test/top1"]]) == 1
    assert state["hyper_parameters"]["sync_bn"] is True
    assert not any("module." in k for k in state["state_dict"])  # plain keys: loads without DDP/SyncBN
