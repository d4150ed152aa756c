"""Where the main job's time goes: `python -m tanet_lightning.train` (TANet ResNet-18, 8x32x32, CPU).

    python benchmarks/main_job.py                       # the main job's defaults
    python benchmarks/main_job.py data.batch_size=8     # any train.yaml override

One real epoch of the main job runs through `tanet_lightning.train.train` with a timing callback,
which splits the epoch wall time into training steps (forward, backward, optimizer), waiting for the
loader, validation and the rest (checkpoints, logging, hooks). Beside it, on the same batches:
decoding and augmentation per clip (one process), a TANet and a C2D training step from memory, fused
against unfused optimizer steps, and synthetic-data generation with one process against one per core.
The last line estimates the whole job: generation + start-up + epochs x epoch + test.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from tanet_lightning import config
from tanet_lightning.data.io import read_video_frames
from tanet_lightning.data.synthetic import SyntheticSpec, ensure_synthetic
from tanet_lightning.data.transforms import normalize_on_device, train_transform
from tanet_lightning.models import create_video_model
from tanet_lightning.train import train

EPOCHS: list[dict[str, float]] = []  # filled by PhaseTimer, which the Trainer instantiates from the config


class PhaseTimer(L.Callback):
    """Splits a training epoch's wall time into steps, loader waits, validation and the rest."""

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = self._mark = time.perf_counter()
        EPOCHS.append({"steps": 0.0, "loader": 0.0, "validation": 0.0, "batches": 0})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = time.perf_counter()
        EPOCHS[-1]["loader"] += now - self._mark  # the loader's next() and the transfer to the device
        self._mark = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        EPOCHS[-1]["steps"] += now - self._mark
        EPOCHS[-1]["batches"] += 1
        self._mark = now

    def on_validation_start(self, trainer, pl_module):
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module):
        if EPOCHS and not trainer.sanity_checking:
            EPOCHS[-1]["validation"] += time.perf_counter() - self._val_start

    def on_train_end(self, trainer, pl_module):
        # after the last epoch's checkpoints (Lightning runs checkpoint callbacks last): one epoch, whole
        EPOCHS[-1]["wall"] = time.perf_counter() - self._start


def compose_train(overrides: list[str], run_dir: Path) -> DictConfig:
    config.register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config.config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        del cfg.hydra
    return cfg


def interleaved_step_ms(backbone: str, variants: dict[str, tuple[str, bool]], video, label,
                        rounds: int = 5) -> dict[str, float]:
    """Median ms of a training step (forward, backward, AdamW) per variant name -> (temporal module,
    fused optimizer), measured A B C A B C ... so that machine noise hits every variant alike."""
    steps = {}
    for name, (temporal, fused) in variants.items():
        torch.manual_seed(0)
        net = create_video_model(backbone, temporal, num_classes=8, num_frames=video.shape[1]).train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=fused)

        def step(net=net, opt=opt):
            F.cross_entropy(net(video), label).backward()
            opt.step()
            opt.zero_grad()

        step()  # warm-up
        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(2):
                step()
            times[name].append((time.perf_counter() - start) / 2)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def per_clip_ms(fn, items: int, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000 / items


def generation_seconds(spec: SyntheticSpec, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        ensure_synthetic(Path(tmp) / "synthetic", spec, workers=workers)
        return time.perf_counter() - start


def main(overrides: list[str]) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"main job on {cores} cores, torch {torch.__version__}; overrides: {overrides or 'none'}")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tanet_lightning.train"], check=True)
    import_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        job = compose_train(overrides, run_dir)  # the job as configured; one epoch of it is measured
        epochs, spec = job.trainer.max_epochs, SyntheticSpec(**job.data.get("synthetic", {}))
        serial, parallel = generation_seconds(spec, 1), generation_seconds(spec, min(8, cores))
        cfg = compose_train([*overrides, "trainer.max_epochs=1", "test=false", "logger=csv",
                             "trainer.enable_progress_bar=false"], run_dir)
        with open_dict(cfg):
            cfg.callbacks = {**(cfg.get("callbacks") or {}), "phase_timer": {"_target_": "__main__.PhaseTimer"}}
        fit_start = time.perf_counter()
        _, objects = train(cfg)
        fit_s = time.perf_counter() - fit_start
        epoch = EPOCHS[0]
        dm = objects["datamodule"]
        batches = [b for _, b in zip(range(3), dm.train_dataloader())]

    # per clip, in this process: decoding (PyAV, seeking to the sampled frames) and augmentation
    data = dm.datasets["train"]
    s = data.settings
    rng = np.random.default_rng(0)
    records = data.records[:64]
    clips = []

    def decode():
        clips.clear()
        for rec in records:
            clips.append(read_video_frames(rec.path, lambda n: data.sampler.train(n, rng)))  # native, as the dataset

    decode_ms = per_clip_ms(decode, len(records))
    augment_ms = per_clip_ms(lambda: [train_transform(c, rng, s.crop_size, s.scales, s.max_distort, s.flip,
                                                      s.short_side) for c in clips], len(records))

    video, label = normalize_on_device(batches[0]["video"]), batches[0]["label"]
    name = cfg.model.temporal.name
    variants = {"tanet": (name, True), "c2d": ("c2d", True), "unfused": (name, False)}
    ms = interleaved_step_ms(cfg.model.backbone, variants, video, label)
    tanet, c2d, unfused = ms["tanet"], ms["c2d"], ms["unfused"]

    n = epoch["batches"]
    rest = epoch["wall"] - epoch["steps"] - epoch["loader"] - epoch["validation"]
    b = video.shape[0]
    print(f"\none epoch: {n} batches of {b} clips, {epoch['wall']:.1f} s")
    for name, value in (("training steps (forward, backward, optimizer)", epoch["steps"]),
                        ("waiting for the loader", epoch["loader"]),
                        ("validation", epoch["validation"]),
                        ("checkpoints, logging, hooks", rest)):
        print(f"  {name:<46} {value:6.1f} s  {100 * value / epoch['wall']:5.1f} %")
    print(f"\nper batch of {b} clips (one process; the loader's worker does this beside the steps)")
    print(f"  {'decode (PyAV, seek to the sampled frames)':<46} {decode_ms * b:6.0f} ms")
    print(f"  {'augment (multi-scale crop, resize, flip)':<46} {augment_ms * b:6.0f} ms")
    print(f"  {'training step in the Trainer':<46} {1000 * epoch['steps'] / n:6.0f} ms")
    print(f"  {'TANet step from memory, fused AdamW':<46} {tanet:6.0f} ms")
    print(f"  {'C2D step from memory, fused AdamW':<46} {c2d:6.0f} ms   TANet/C2D {tanet / c2d:.2f}x")
    print(f"  {'TANet step from memory, unfused AdamW':<46} {unfused:6.0f} ms   unfused/fused {unfused / tanet:.2f}x")
    print(f"  decode+augment / step: {(decode_ms + augment_ms) * b / tanet:.2f} (below 1: one worker keeps up)")
    print(f"\nsynthetic data, first run only: {parallel:.1f} s with {min(8, cores)} processes, "
          f"{serial:.1f} s with one ({serial / parallel:.2f}x)")
    setup_s = fit_s - epoch["wall"]
    estimate = import_s + setup_s + epochs * epoch["wall"]
    print(f"start-up: import {import_s:.1f} s, run set-up and teardown {setup_s:.1f} s")
    print(f"estimate of the main job ({epochs} epochs, test not included): {estimate:.0f} s; "
          f"+{parallel:.0f} s on a first run")


if __name__ == "__main__":
    main(sys.argv[1:])
