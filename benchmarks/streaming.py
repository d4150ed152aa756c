"""A prepared dataset read as LitData shards (local disk, an S3 server on the loopback address) vs read as
the prepared files: decode speed, cache, writing cost and a loader worker's memory, side by side in one run.

    python benchmarks/streaming.py [--dir /tmp/tanet_bench_streaming] [--per-class 12] [--size 96] [--runs 3]
    python benchmarks/streaming.py --tiny     # smoke run: a few small videos, one run (tests)

The source is the embedded synthetic motion set (8 classes, ``--per-class`` training videos each, ``--size``
pixels square, 48-64 frames), prepared once to files (``prepare out=files``) and once to shards
(``prepare out=shards shards=true``). Then:

* clips per CPU-second, local shards vs the prepared files: ``VideoClipDataset[i]`` in train mode (sample
  the clip, decode it, multi-scale crop + flip), every training video once per run in a seeded order, the
  two sources alternating clip by clip so that load drifts hit both alike; median over ``--runs``;
* the same from the loopback S3 server (moto, a separate process, so its CPU is not ours), epoch 1 with an
  empty ``data.cache_dir`` (cold) vs epoch 2 with it (warm), in clips per CPU-second and per wall-second
  (each split's first sample, which sets up boto3's client and reads the split's ``index.json``, apart);
* writing: ``prepare shards=true`` (the files, then packed) vs ``prepare`` to files, wall and CPU seconds of
  the process and its workers, and the packing alone (``shards.write_dataset`` from the files);
* a DataLoader worker's memory over 3 epochs of streaming (``num_workers=1``, ``persistent_workers``), from
  local shards and from S3: its peak RSS (VmHWM) after each epoch; the goal is flat within 5 %.

CPU time, not wall time, for the rates: the machine this runs on is shared. Read the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from tanet_lightning import config
from tanet_lightning.data import shards
from tanet_lightning.data.datamodule import VideoDataModule
from tanet_lightning.data.synthetic import SyntheticSpec, ensure_synthetic, synthetic_dir
from tanet_lightning.prepare import prepare

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_loading import table  # noqa: E402  (the same markdown tables)

BUCKET = "bench"


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (prepare's worker processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed_prepare(base: Path, spec_keys: list[str], out: Path, *extra: str) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    config.register_resolvers()
    cfg = config.compose_app("prepare", [*spec_keys, f"out={out}", "progress=false", *extra], base / "runs" / out.name)
    wall, cpu = time.perf_counter(), cpu_seconds()
    prepare(cfg)
    return time.perf_counter() - wall, cpu_seconds() - cpu


def datamodule(base: Path, spec: SyntheticSpec, root: str, **kw) -> VideoDataModule:
    dm = VideoDataModule(data_dir=base / "data", format="synthetic", root=root, synthetic=asdict(spec), num_frames=8,
                         short_side=64, crop_size=56, num_workers=0, batch_size=8, **kw)
    dm.setup()
    return dm


def clip_rates(datasets: dict, runs: int) -> dict[str, float]:
    """Median over runs of clips per CPU-second per source; every video once per run, sources alternating."""
    names, n = list(datasets), len(next(iter(datasets.values())))
    rates = {name: [] for name in names}
    for r in range(runs):
        order = np.random.default_rng(r).permutation(n)
        spent = dict.fromkeys(names, 0.0)
        for c, i in enumerate(order):
            for name in names[c % len(names):] + names[: c % len(names)]:
                torch.manual_seed(int(i))  # the same clip and augmentation from every source
                t = time.process_time()
                datasets[name][int(i)]
                spent[name] += time.process_time() - t
        for name in names:
            rates[name].append(n / spent[name])
    return {name: statistics.median(v) for name, v in rates.items()}


def epoch_rate(dataset, seed: int) -> tuple[float, float]:
    """One pass over ``dataset`` in a seeded order: (clips per CPU-second, clips per wall-second)."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    cpu, wall = time.process_time(), time.perf_counter()
    for i in order:
        dataset[int(i)]
    return len(order) / (time.process_time() - cpu), len(order) / (time.perf_counter() - wall)


def worker_memory(dataset, epochs: int = 3) -> list[tuple[float, float]]:
    """(peak RSS, RSS) in MB of the one loader worker after each of ``epochs`` epochs over ``dataset``."""
    loader = DataLoader(dataset, batch_size=8, shuffle=True, num_workers=1, persistent_workers=True,
                        generator=torch.Generator().manual_seed(0))
    it, seen = iter(loader), []
    for epoch in range(epochs):
        if epoch:
            it = iter(loader)  # persistent: the same worker process every epoch
        for _ in it:
            pass
        (worker,) = it._workers  # the DataLoader's own handle on its worker process
        status = dict(line.split(":", 1) for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines())
        seen.append((int(status["VmHWM"].split()[0]) / 1024, int(status["VmRSS"].split()[0]) / 1024))
    it._shutdown_workers()
    return seen


def start_s3(folder: Path) -> tuple[subprocess.Popen, str]:
    """moto's S3 server on a free loopback port, in its own process; the endpoint URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(folder / "moto.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"moto's server did not start: see {folder / 'moto.log'}")


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/tmp/tanet_bench_streaming")
    ap.add_argument("--per-class", type=int, default=12, help="training videos per class (8 classes)")
    ap.add_argument("--size", type=int, default=96, help="frame size in pixels (square)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="2 videos per class at 32 px, 1 run: a smoke test")
    args = ap.parse_args()
    if args.tiny:
        args.per_class, args.size, args.runs = 2, 32, 1
    torch.set_num_threads(1)
    base = Path(args.dir) / ("tiny" if args.tiny else f"{args.per_class}x{args.size}px")
    base.mkdir(parents=True, exist_ok=True)
    spec = SyntheticSpec(train_per_class=args.per_class, val_per_class=1, test_per_class=1, size=args.size,
                         min_frames=48, max_frames=64)
    keys = [f"data.synthetic.{k}={v}" for k, v in asdict(spec).items()] + [f"paths.data_dir={base / 'data'}"]
    print(f"{8 * args.per_class} training videos, {args.size}x{args.size}, 48-64 frames; {load()}\n")

    ensure_synthetic(synthetic_dir(base / "data" / "synthetic", spec), spec)  # the source, before any timing
    files_t = timed_prepare(base, keys, base / "files")
    shards_t = timed_prepare(base, keys, base / "shards", "shards=true", "chunk_bytes=4MB")
    files = datamodule(base, spec, str(base / "files"))
    wall, cpu = time.perf_counter(), cpu_seconds()
    shards.write_dataset(files, base / "packed", chunk_bytes="4MB")
    pack_t = time.perf_counter() - wall, cpu_seconds() - cpu
    size = sum(p.stat().st_size for p in (base / "shards" / "train").glob("chunk-*.bin")) / 2**20
    print(f"writing ({load()}):")
    table(["what", "wall s", "CPU s", "wall / prepare to files", "CPU / prepare to files"],
          [["prepare to files", *files_t, 1.0, 1.0],
           ["prepare shards=true (files, then packed)", *shards_t, shards_t[0] / files_t[0], shards_t[1] / files_t[1]],
           ["packing alone (write_dataset)", *pack_t, pack_t[0] / files_t[0], pack_t[1] / files_t[1]]])

    local = datamodule(base, spec, str(base / "shards"))
    rates = clip_rates({"files": files.datasets["train"], "shards": local.datasets["train"]}, args.runs)
    print(f"\nclips per CPU-second, train mode, one core ({load()}):")
    table(["source", "clips/CPU-s", "/ files"], [["prepared files", rates["files"], 1.0],
                                                   ["local shards", rates["shards"], rates["shards"] / rates["files"]]])

    server, endpoint = start_s3(base)
    try:
        os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_DEFAULT_REGION="us-east-1")
        import boto3

        boto3.client("s3").create_bucket(Bucket=BUCKET)
        shards.upload(base / "shards", f"s3://{BUCKET}/synthetic")
        cache = base / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        remote = datamodule(base, spec, f"s3://{BUCKET}/synthetic", cache_dir=str(cache))
        setup = []  # the first sample of a process (boto3's import), then of a split (its client, index.json)
        for split in ("val", "train"):
            began = time.perf_counter(), time.process_time()
            remote.datasets[split][0]
            setup.append((time.perf_counter() - began[0], time.process_time() - began[1]))
        cold = epoch_rate(remote.datasets["train"], 0)
        warm = epoch_rate(remote.datasets["train"], 1)
        local_epoch = epoch_rate(local.datasets["train"], 0)
        cached = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20
        print(f"\nloopback S3 (moto in its own process), one epoch each ({load()}):")
        table(["source", "clips/CPU-s", "clips/s (wall)", "CPU rate / local shards"],
              [["local shards", *local_epoch, 1.0],
               ["S3, epoch 1, empty cache (cold)", *cold, cold[0] / local_epoch[0]],
               ["S3, epoch 2, same cache (warm)", *warm, warm[0] / local_epoch[0]]])
        print(f"warm / cold: {warm[0] / cold[0]:.2f} (CPU), {warm[1] / cold[1]:.2f} (wall); data.cache_dir holds "
              f"{cached:.2f} MB after 2 epochs (the train shards: {size:.2f} MB). Not in the rates: the first sample "
              f"of the process {setup[0][0]:.2f} s wall, {setup[0][1]:.2f} s CPU; the first of another split "
              f"{setup[1][0]:.2f} s wall, {setup[1][1]:.2f} s CPU")

        print(f"\na loader worker's memory over 3 epochs (num_workers=1, persistent) ({load()}):")
        rows = []
        for name, dm in (("local shards", local), ("S3", remote)):
            seen = worker_memory(dm.datasets["train"])
            rows.append([name, *(f"{hwm:.0f}" for hwm, _ in seen), f"{seen[-1][1]:.0f}",
                         seen[-1][0] / seen[0][0]])
        table(["source", "peak RSS MB after epoch 1", "2", "3", "RSS MB after 3", "peak 3 / peak 1"], rows)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
