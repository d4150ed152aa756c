"""DataWaitMonitor: a run whose loader is slow (on purpose) logs perf/data_wait_frac and says it is data-bound."""

from __future__ import annotations

import csv
import logging
import time

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf

from tanet_lightning.config import config_dir
from tanet_lightning.data.datamodule import VideoDataModule
from tanet_lightning.data.datasets import VideoClipDataset
from tanet_lightning.runs.callbacks import DataWaitMonitor
from tinyconf import video_set


class SlowClips(VideoClipDataset):
    """The real dataset, with a slow disk or decoder: every item takes `delay` seconds more."""

    delay = 0.0

    def __getitem__(self, i: int) -> dict:
        time.sleep(self.delay)
        return super().__getitem__(i)


class SlowData(VideoDataModule):
    def __init__(self, *args, delay: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay = delay

    def _dataset(self, split: str) -> VideoClipDataset:
        d = super()._dataset(split)
        slow = SlowClips(d.records, d.mode, d.bad_files, d.settings, d.protocol, self.flip_label_map)
        slow.delay = self.delay
        return slow


class Pooled(L.LightningModule):
    def __init__(self, step_s: float):
        super().__init__()
        self.step_s, self.fc = step_s, torch.nn.Linear(3, 2)

    def training_step(self, batch, batch_idx):
        time.sleep(self.step_s)
        logits = self.fc(batch["video"].float().mean(dim=(1, 3, 4)))
        return torch.nn.functional.cross_entropy(logits, batch["label"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(tmp_path, data_s: float, step_s: float) -> list[dict]:
    videos = video_set(tmp_path / "videos", gop=8, repeat=3, frames=24)  # 12 training items: 6 steps per epoch
    data = SlowData(tmp_path, delay=data_s, **videos)
    trainer = L.Trainer(max_steps=12, accelerator="cpu", logger=CSVLogger(tmp_path, name="log"), log_every_n_steps=1,
                        limit_val_batches=0, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[DataWaitMonitor(warmup_steps=2, window=5)])
    trainer.fit(Pooled(step_s), datamodule=data)
    with open(trainer.logger.experiment.metrics_file_path) as f:
        return [r for r in csv.DictReader(f) if r.get("perf/data_wait_frac")]


def test_a_run_waiting_on_its_loader_says_so_once(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        rows = fit(tmp_path, data_s=0.04, step_s=0.0)
    # 2 epochs x 6 steps, minus the first step of each epoch and the 2nd (warm-up: the run's first 2 steps)
    assert len(rows) == 9 and float(rows[-1]["perf/data_wait_frac"]) > 0.4, rows
    assert all(0 < float(r["perf/clips_per_s"]) < 2 / 0.08 for r in rows)  # 2 clips per >= 80 ms
    warnings = [r.message for r in caplog.records if "data-bound" in r.message]
    assert len(warnings) == 1, caplog.text
    assert "data.num_workers=0" in warnings[0] and "python -m tanet_lightning.prepare data=video_list" in warnings[0]


def test_a_run_that_computes_more_than_it_waits_stays_quiet(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        rows = fit(tmp_path, data_s=0.0, step_s=0.15)
    assert rows and all(float(r["perf/data_wait_frac"]) < 0.2 for r in rows)
    assert "data-bound" not in caplog.text


@pytest.mark.parametrize("key", ["warn_fraction", "warmup_steps", "window"])
def test_default_callbacks_configure_it(key):
    node = OmegaConf.load(f"{config_dir()}/callbacks/default.yaml").data_wait_monitor
    assert node._target_.endswith("DataWaitMonitor") and key in node
