"""Training throughput (clips/s) of TANet and C2D, fed from memory and by the real data pipeline.

    python benchmarks/throughput.py [--device cuda] [--workers 1 2 8] [--steps 20] [--compile both]
    python benchmarks/throughput.py --device cpu --tiny          # smoke test (CI): seconds

Default (GPU): ResNet-50, 8 frames at 224x224, bf16 autocast, channels_last, the paper's batch of 8
clips per GPU. Each configuration runs `--steps` timed SGD steps after `--warmup` steps (compile
happens in the warm-up), fed

* from memory: one pre-made batch of normalised clips already on the device (the compute limit);
* by the DataModule: VideoDataModule over generated Kinetics-like videos (340x256 H.264, GOP 250,
  10 s at 30 fps; the paper's dense 8x8 sampling, multi-scale crop, flip), with N workers, pinned
  memory, persistent workers; batches are moved to the device and normalised there, as in training.

It prints clips/s per (model, compile, feed) and two ratios side by side: loader / memory (how much
of the compute the pipeline can feed) and TANet / C2D (the cost of TAM). `--tiny` is ResNet-18, 4
frames at 32x32 on small videos: a check that every path runs, not a measurement.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_loading import generate  # noqa: E402  (the Kinetics-like video generator)

from tanet_lightning.data.datamodule import VideoDataModule  # noqa: E402
from tanet_lightning.models import create_video_model  # noqa: E402

FULL = dict(backbone="resnet50", frames=8, size=224, short_side=256, batch=8, videos=(340, 256, 30, 300, 250))
TINY = dict(backbone="resnet18", frames=4, size=32, short_side=40, batch=4, videos=(64, 48, 15, 30, 250))


def make_videos(folder: Path, count: int, spec: tuple) -> Path:
    """`count` generated H.264 videos (w, h, fps, frames, GOP) and a video_list annotation over them."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h, fps, n, gop = spec
    lines = []
    for i in range(count):
        name = f"v{w}x{h}_g{gop}_{i:02d}.mp4"
        if not (folder / name).exists():
            generate(folder / name, w, h, fps, n, "libx264", gop)
        lines.append(f"{name} {i % 4}")
    ann = folder / f"list_{w}x{h}_{count}.txt"
    ann.write_text("\n".join(lines) + "\n")
    return ann


def build(temporal: str, cfg: dict, device: str, compile_: bool | str,
          channels_last: bool | None = None) -> torch.nn.Module:
    """`compile_`: True compiles as model.compile=true does (inductor), a string names another torch.compile
    backend; `channels_last` None = on CUDA only (gpu_check.py times each setting on its own)."""
    torch.manual_seed(0)
    model = create_video_model(cfg["backbone"], temporal, num_classes=400, num_frames=cfg["frames"])
    model = model.to(device).train()
    if device == "cuda" if channels_last is None else channels_last:
        model.to(memory_format=torch.channels_last)
        model.channels_last = True
    if compile_:
        model.backbone.compile(**({"backend": compile_} if isinstance(compile_, str) else {}))
    return model


def timed_rate(model: torch.nn.Module, batches, steps: int, device: str, amp: bool, warmup: int) -> float:
    """Clips/s over `steps` SGD steps after warm-up steps; `batches` yields (video, label) on the device."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    clips, t0 = 0, time.perf_counter()
    for i, (video, label) in enumerate(itertools.islice(batches, steps + warmup)):
        if i == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(video), label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        clips += len(label) if i >= warmup else 0
    if device == "cuda":
        torch.cuda.synchronize()
    return clips / (time.perf_counter() - t0)


def memory_batches(cfg: dict, device: str):
    video = torch.randn(cfg["batch"], cfg["frames"], 3, cfg["size"], cfg["size"], device=device)
    label = torch.randint(0, 400, (cfg["batch"],), device=device)
    while True:
        yield video, label


def loader_batches(dm: VideoDataModule, device: str):
    loader = dm.train_dataloader()
    if len(loader) == 0:
        raise SystemExit(f"--num-videos is smaller than one batch ({dm.batch_size} clips): no training batch")
    while True:  # epochs repeat (persistent workers stay up)
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            batch = dm.on_after_batch_transfer(batch, 0)
            yield batch["video"], batch["label"]


def datamodule(ann: Path, cfg: dict, workers: int, device: str) -> VideoDataModule:
    dm = VideoDataModule(data_dir=ann.parent, format="video_list", root=str(ann.parent), train_ann=str(ann),
                         val_ann=str(ann), num_frames=cfg["frames"], sampler="dense", short_side=cfg["short_side"],
                         crop_size=cfg["size"], batch_size=cfg["batch"], num_workers=workers,
                         pin_memory=device == "cuda", persistent_workers=True)
    dm.setup("fit")
    return dm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="ResNet-18, 4 frames, 32x32, small videos (smoke test)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, cudnn autotune)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--compile", choices=["off", "on", "both"], default="both")
    p.add_argument("--precision", choices=["bf16", "fp32"], default=None, help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "tanet_bench_videos")
    p.add_argument("--num-videos", type=int, default=16)
    a = p.parse_args()
    cfg = TINY if a.tiny else FULL
    amp = (a.precision or ("bf16" if a.device == "cuda" else "fp32")) == "bf16"
    if a.device == "cuda":
        torch.backends.cudnn.benchmark = True
    where = torch.cuda.get_device_name() if a.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device {a.device} ({where}), torch {torch.__version__}, {cfg['backbone']} {cfg['frames']}f "
          f"{cfg['size']}px, batch {cfg['batch']}, {'bf16 autocast' if amp else 'fp32'}, "
          f"channels_last {a.device == 'cuda'}, {a.steps} timed steps")
    ann = make_videos(a.dir, a.num_videos, cfg["videos"])
    compiles = {"off": [False], "on": [True], "both": [False, True]}[a.compile]
    feeds = ["memory", *[f"loader w={w}" for w in a.workers]]
    rates: dict[tuple[str, bool, str], float] = {}
    for compile_, temporal in itertools.product(compiles, ["c2d", "tam"]):
        model = build(temporal, cfg, a.device, compile_)
        for feed in feeds:
            if feed == "memory":
                batches = memory_batches(cfg, a.device)
            else:
                batches = loader_batches(datamodule(ann, cfg, int(feed.split("=")[1]), a.device), a.device)
            rates[temporal, compile_, feed] = timed_rate(model, batches, a.steps, a.device, amp, a.warmup)
    print(f"\n{'model':<7}{'compile':<9}" + "".join(f"{f:>14}" for f in feeds)
          + "".join(f"{f + ' / mem':>20}" for f in feeds[1:]))
    for temporal, compile_ in itertools.product(["c2d", "tam"], compiles):
        r = [rates[temporal, compile_, f] for f in feeds]
        print(f"{'TANet' if temporal == 'tam' else 'C2D':<7}{'on' if compile_ else 'off':<9}"
              + "".join(f"{x:>14.1f}" for x in r) + "".join(f"{x / r[0]:>20.2f}" for x in r[1:]))
    print("\nTANet / C2D (clips/s ratio, < 1 = TANet slower):")
    for compile_ in compiles:
        print(f"  compile {'on ' if compile_ else 'off'}  "
              + "  ".join(f"{f}: {rates['tam', compile_, f] / rates['c2d', compile_, f]:.3f}" for f in feeds))
    if len(compiles) == 2:
        print("compile on / off (clips/s): "
              + "  ".join(f"{m} {rates[t, True, 'memory'] / rates[t, False, 'memory']:.2f}"
                          for m, t in (("C2D", "c2d"), ("TANet", "tam"))) + " (memory feed)")


if __name__ == "__main__":
    main()
