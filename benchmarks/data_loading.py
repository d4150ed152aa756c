"""Clip-loading throughput on one core: our loader vs plain PyAV (the limit), torchcodec, PyTorchVideo, decord.

    python benchmarks/data_loading.py [--dir /tmp/tanet_bench_videos] [--clips 20] [--runs 5]

Generates (once, cached in --dir) Kinetics-like videos: 340x256, 30 fps, 10 s, H.264 with GOP 250
and GOP 30, plus a 427x240 12 fps VP9 webm like Something-Something V2. Then prints clips/s for
dense 8x8 and TSN 8-segment clips:

* ours     - VideoClipDataset.__getitem__ in train mode: demux index, seek, decode, RGB of the 8
             frames, multi-scale crop 224 + flip (short side 256: the webm is resized in swscale);
* limit    - plain PyAV with the pts/keyframe index cached outside the timing: seek, decode to the
             last wanted frame, RGB for the 8 wanted frames only, no augmentation;
* ptv      - PyTorchVideo EncodedVideo (pyav) get_clip over the clip's time span, then pick 8 frames;
* decord   - VideoReader(num_threads=1).get_batch.
* torchcodec - VideoDecoder(num_ffmpeg_threads=1, seek_mode="exact").get_frames_at: the maintained
             FFmpeg-based decoder of the PyTorch project (needs FFmpeg 4-7 shared libraries on the
             system, e.g. `apt-get install libavcodec59 libavformat59 libswscale6`).
The last three come from the `bench` extra and are skipped with a message when not installed or not
loadable.
Every number is the median over --runs runs of --clips clips (fixed seeds: all backends get the same
index distribution). This VM is noisy (+-15-30 % between runs): read the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np
import torch

from tanet_lightning.data.datasets import BadFileLog, VideoClipDataset
from tanet_lightning.data.formats import VideoRecord
from tanet_lightning.data.io import _demux_index, _get_reformatter
from tanet_lightning.data.sampling import ClipSampler

FILES = {  # name: (width, height, fps, frames, codec, gop)
    "k340x256_g250.mp4": (340, 256, 30, 300, "libx264", 250),
    "k340x256_g30.mp4": (340, 256, 30, 300, "libx264", 30),
    "ssv2_427x240.webm": (427, 240, 12, 48, "libvpx-vp9", 48),
}


# ----------------------------------------------------------------------------------------------------
# test videos: panning texture + moving ellipses + sensor noise, so the encoder does real work


def _frames(w: int, h: int, n: int, rng: np.random.Generator):
    coarse = rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    tex = torch.nn.functional.interpolate(
        torch.from_numpy(coarse).permute(2, 0, 1)[None], scale_factor=16, mode="bicubic"
    )
    tex = tex[0].permute(1, 2, 0).numpy() + rng.normal(0, 12, (coarse.shape[0] * 16, coarse.shape[1] * 16, 3))
    ys, xs = np.mgrid[0:h, 0:w]
    blobs = [
        (
            rng.uniform(0, w),
            rng.uniform(0, h),
            rng.uniform(-3, 3),
            rng.uniform(-2, 2),
            rng.uniform(15, 40),
            rng.integers(0, 256, 3),
        )
        for _ in range(5)
    ]
    for t in range(n):
        dx = int(t * 0.5) % 16
        img = tex[:h, dx : dx + w].copy()
        for x0, y0, vx, vy, r, col in blobs:
            cx, cy = (x0 + vx * t) % w, (y0 + vy * t) % h
            img[((xs - cx) / r) ** 2 + ((ys - cy) / (0.6 * r)) ** 2 < 1] = col
        yield np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def generate(path: Path, w: int, h: int, fps: int, n: int, codec: str, gop: int) -> None:
    tmp = path.with_suffix(".tmp" + path.suffix)
    with av.open(str(tmp), "w") as out:
        s = out.add_stream(codec, rate=Fraction(fps, 1))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            s.options = {
                "crf": "23",
                "preset": "medium",
                "x264-params": f"keyint={gop}:min-keyint={min(gop, 25)}",
            }
        else:
            s.options = {
                "crf": "31",
                "b": "0",
                "deadline": "good",
                "cpu-used": "4",
                "row-mt": "1",
                "g": str(gop),
            }
        for i, f in enumerate(_frames(w, h, n, np.random.default_rng(0))):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    tmp.rename(path)


# ----------------------------------------------------------------------------------------------------
# clip index streams (same seeds for every backend)


def clip_indices(kind: str, num_frames: int, clips: int, seed: int) -> list[np.ndarray]:
    sampler, rng = ClipSampler(kind, 8), np.random.default_rng(seed)
    return [sampler.train(num_frames, rng) for _ in range(clips)]


def run_ours(path: str, kind: str, clips: int, seed: int) -> None:
    bad = BadFileLog(os.devnull, 1.0, 1)
    dataset = VideoClipDataset([VideoRecord(path, 0)], ClipSampler(kind, 8), "train", bad)
    torch.manual_seed(seed)
    for _ in range(clips):
        dataset[0]


def run_limit(path: str, kind: str, clips: int, seed: int, index) -> None:
    pts, keys = index
    reformat = _get_reformatter()
    for idx in clip_indices(kind, len(pts), clips, seed):
        wanted, out = np.unique(idx), {}
        key_idx = np.searchsorted(pts, keys[np.searchsorted(keys, pts[wanted], side="right") - 1])
        with av.open(path) as c:
            vs = c.streams.video[0]
            vs.codec_context.thread_count = 1
            i = 0
            while i < len(wanted):
                c.seek(int(pts[key_idx[i]]), stream=vs)
                for frame in c.decode(vs):
                    f = int(np.searchsorted(pts, frame.pts))
                    if f == wanted[i]:
                        out[f] = reformat.reformat(frame, format="rgb24", threads=1).to_ndarray()
                        i += 1
                        if i == len(wanted) or key_idx[i] - f > 4:
                            break
        np.stack([out[int(f)] for f in idx])


def run_ptv(path: str, kind: str, clips: int, seed: int, fps: float, n: int) -> None:
    from pytorchvideo.data.encoded_video import EncodedVideo

    for idx in clip_indices(kind, n, clips, seed):
        video = EncodedVideo.from_path(path, decoder="pyav", decode_audio=False)
        lo, hi = int(idx.min()), int(idx.max())
        clip = video.get_clip(lo / fps, (hi + 1) / fps)[
            "video"
        ]  # float32 C x T x H x W, every frame in the span
        clip[:, np.clip(idx - lo, 0, clip.shape[1] - 1)]
        video.close()


def run_decord(path: str, kind: str, clips: int, seed: int, n: int) -> None:
    import decord

    for idx in clip_indices(kind, n, clips, seed):
        decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1).get_batch(idx.tolist()).asnumpy()


def run_torchcodec(path: str, kind: str, clips: int, seed: int, n: int) -> None:
    from torchcodec.decoders import VideoDecoder

    for idx in clip_indices(kind, n, clips, seed):  # a decoder per clip, as every other backend opens the file
        VideoDecoder(path, num_ffmpeg_threads=1, seek_mode="exact", dimension_order="NHWC").get_frames_at(
            idx.tolist()
        )


def torchcodec_problem(path: Path) -> str | None:
    """Why torchcodec cannot run here (not installed, or its FFmpeg libraries do not load), else None."""
    try:
        from torchcodec.decoders import VideoDecoder

        VideoDecoder(str(path), num_ffmpeg_threads=1)
    except Exception as e:  # ImportError, or RuntimeError/OSError from loading libtorchcodec + FFmpeg
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
    return None


def timed(fns: dict, runs: int, clips: int) -> dict[str, float]:
    """Median clips/s per backend; backends alternate inside each run so load drifts hit all alike."""
    rates = {name: [] for name in fns}
    for r in range(runs):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn(seed=r)
            rates[name].append(clips / (time.perf_counter() - t))
    return {name: statistics.median(v) for name, v in rates.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/tmp/tanet_bench_videos")
    ap.add_argument("--clips", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    os.sched_setaffinity(
        0, {min(os.sched_getaffinity(0))}
    )  # one core for everything, decoder threads included
    torch.set_num_threads(1)
    d = Path(args.dir)
    d.mkdir(parents=True, exist_ok=True)
    for name, spec in FILES.items():
        if not (d / name).exists():
            t = time.perf_counter()
            generate(d / name, *spec)
            print(f"generated {name} in {time.perf_counter() - t:.1f} s")

    backends = {"ours": None, "limit": None}
    for mod in ("pytorchvideo", "decord"):
        try:
            __import__(mod)
            backends["ptv" if mod == "pytorchvideo" else mod] = None
        except ImportError as e:
            print(f"skipping {mod}: not installed ({e}); `pip install -e .[bench]` adds it")
    problem = torchcodec_problem(d / next(iter(FILES)))
    if problem is None:
        backends["torchcodec"] = None
    else:
        print(f"skipping torchcodec: {problem} (`pip install -e .[bench]` and FFmpeg 4-7 shared libraries)")

    rows = []
    for name, (_, _, fps, _, _, _) in FILES.items():
        path = str(d / name)
        with av.open(path) as c:
            index = _demux_index(c, c.streams.video[0])[:2]
        n = len(index[0])
        for kind in ("dense", "uniform"):
            fns = {  # each fn(seed=...) loads args.clips clips
                "ours": partial(run_ours, path, kind, args.clips),
                "limit": partial(run_limit, path, kind, args.clips, index=index),
                "ptv": partial(run_ptv, path, kind, args.clips, fps=fps, n=n),
                "decord": partial(run_decord, path, kind, args.clips, n=n),
                "torchcodec": partial(run_torchcodec, path, kind, args.clips, n=n),
            }
            rows.append(
                (
                    name,
                    "dense 8x8" if kind == "dense" else "TSN 8 seg",
                    timed({b: fns[b] for b in backends}, args.runs, args.clips),
                )
            )
            print(".", end="", flush=True)
    print()

    cols = list(backends)
    head = (
        f"| file | clips | {' | '.join(cols)} | ours/limit |"
        + (" ours/decord |" if "decord" in cols else "")
        + (" ours/ptv |" if "ptv" in cols else "")
        + (" ours/torchcodec |" if "torchcodec" in cols else "")
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, kind, r in rows:
        line = (
            f"| {name} | {kind} | "
            + " | ".join(f"{r[b]:.1f}" for b in cols)
            + f" | {r['ours'] / r['limit']:.2f} |"
        )
        line += f" {r['ours'] / r['decord']:.2f} |" if "decord" in r else ""
        line += f" {r['ours'] / r['ptv']:.2f} |" if "ptv" in r else ""
        line += f" {r['ours'] / r['torchcodec']:.2f} |" if "torchcodec" in r else ""
        print(line)
    print(
        f"clips/s on one core, median of {args.runs} runs x {args.clips} clips; "
        "ours includes the train augmentation"
    )


if __name__ == "__main__":
    main()
