"""Clip loading on one core: our loader vs plain PyAV, torchcodec, PyTorchVideo and decord; before vs after
`prepare`; a sidecar index vs demuxing the file on every open.

    python benchmarks/data_loading.py [--dir /tmp/tanet_bench_videos] [--clips 12] [--runs 5]
    python benchmarks/data_loading.py --tiny          # smoke run: small files, one run (tests)

Generates (once, cached in --dir) videos with panning texture, moving shapes and sensor noise:
Kinetics-like H.264 (x264 crf 23, medium, B-frames) at 340x256 (MMAction's resized Kinetics) and
640x360 (YouTube 360p), 30 fps, 10 s, a keyframe every 250 frames; a Something-Something-V2-like
427x240 12 fps VP9 webm (one keyframe, 48 frames). The two GOP-250 files are also re-encoded as `prepare`
does (`tanet_lightning.data.transcode.prepare_video` where this checkout has it, else its settings here with
PyAV: H.264 yuv420p crf 23 veryfast, tune fastdecode, a keyframe every 30 frames, short side 320, never
upscaled).

Backends, each given the same clip indices (dense 8x8 and TSN 8 segments, seeded per run):

* ours       - VideoClipDataset.__getitem__ in train mode: index, decode, RGB of the 8 frames,
               multi-scale crop 224 + flip (short side 256);
* pyav       - plain PyAV, the loop everyone writes, with the pts/keyframe index cached outside the
               timing: open, seek to the keyframe, decode to the wanted frames, RGB for those only, no
               augmentation. The decoding limit of a straightforward loader; ours can pass it by not
               doing work that loop does (FFmpeg's probe decode at open, non-reference frames nobody wants);
* ptv        - PyTorchVideo EncodedVideo (pyav) get_clip over the clip's span, then the 8 frames;
* decord     - VideoReader(num_threads=1).get_batch;
* torchcodec - VideoDecoder(num_ffmpeg_threads=1, seek_mode="exact").get_frames_at. It needs FFmpeg
               shared libraries; where the system has none, this script points it at the FFmpeg that
               PyAV bundles (symlinks in --dir, LD_LIBRARY_PATH, one re-exec) and says so.
* ours_tc    - ours with data.decoder=torchcodec: the same dataset item, decoded by torchcodec through
               data/decoders.py (with torchcodec; ours/ours_tc is what the setting changes).

The peers come from the `bench` extra and are skipped with the reason when missing. Every number is the
median over --runs runs of --clips clips; the backends of a table row alternate inside each run, so load
drifts hit all alike. The VMs this runs on are noisy (+-15-30 %): read the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np
import torch

from tanet_lightning.data import io
from tanet_lightning.data.datasets import BadFileLog, VideoClipDataset
from tanet_lightning.data.decoders import FrameReader
from tanet_lightning.data.formats import VideoRecord
from tanet_lightning.data.sampling import ClipSampler
from tanet_lightning.data.settings import ClipSettings

SOURCES = {  # name: (width, height, fps, frames, codec, gop)
    "k340x256_g250.mp4": (340, 256, 30, 300, "libx264", 250),
    "k640x360_g250.mp4": (640, 360, 30, 300, "libx264", 250),
    "ssv2_427x240.webm": (427, 240, 12, 48, "libvpx-vp9", 48),
}
TINY = {  # --tiny: the same kinds of file, small enough for a smoke test
    "k340x256_g250.mp4": (64, 48, 30, 40, "libx264", 30),
    "k640x360_g250.mp4": (96, 54, 30, 40, "libx264", 30),
    "ssv2_427x240.webm": (61, 48, 12, 16, "libvpx-vp9", 16),
}
PREPARED_GOP, PREPARED_SHORT_SIDE = 30, 320  # prepare's defaults
KINDS = {"dense": "dense 8x8", "uniform": "TSN 8"}
TORCHCODEC_ENV = "TANET_BENCH_TORCHCODEC_FFMPEG"  # set on the re-exec that points torchcodec at PyAV's FFmpeg


# ----------------------------------------------------------------------------------------------------
# test videos: panning texture + moving ellipses + sensor noise, so the encoder does real work


def _frames(w: int, h: int, n: int, rng: np.random.Generator):
    coarse = rng.integers(0, 256, (h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    tex = torch.nn.functional.interpolate(
        torch.from_numpy(coarse).permute(2, 0, 1)[None], scale_factor=16, mode="bicubic"
    )
    tex = tex[0].permute(1, 2, 0).numpy() + rng.normal(0, 12, (coarse.shape[0] * 16, coarse.shape[1] * 16, 3))
    ys, xs = np.mgrid[0:h, 0:w]
    blobs = [(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(-3, 3), rng.uniform(-2, 2), rng.uniform(15, 40),
              rng.integers(0, 256, 3)) for _ in range(5)]
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
            s.options = {"crf": "23", "preset": "medium", "x264-params": f"keyint={gop}:min-keyint={min(gop, 25)}"}
        else:
            s.options = {"crf": "31", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1", "g": str(gop)}
        for i, f in enumerate(_frames(w, h, n, np.random.default_rng(0))):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    tmp.rename(path)


def _reencode(src: Path, dst: Path, gop: int, short_side: int) -> None:
    """prepare's re-encode with PyAV and its settings, for checkouts without tanet_lightning.data.transcode."""
    tmp = dst.with_suffix(".tmp" + dst.suffix)
    with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
        vs = inp.streams.video[0]
        h, w = vs.codec_context.height, vs.codec_context.width
        scale = min(1.0, short_side / min(h, w))  # never upscaled
        h, w = (max(2, 2 * round(v * scale / 2)) for v in (h, w))
        fps = Fraction(vs.average_rate)
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.thread_count = 1
        s.options = {"crf": "23", "preset": "veryfast", "tune": "fastdecode",
                     "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for i, frame in enumerate(inp.decode(vs)):
            small = frame.reformat(width=w, height=h, format="yuv420p", interpolation="BICUBIC")
            small.pts, small.time_base = i, 1 / fps
            out.mux(s.encode(small))
        out.mux(s.encode(None))
    tmp.rename(dst)


def prepared_copy(src: Path) -> tuple[Path, str]:
    dst = src.with_name(src.stem + ".prepared.mp4")
    try:
        from tanet_lightning.data.transcode import prepare_video
    except ImportError:
        how = "re-encoded here with PyAV (prepare's settings: tanet_lightning.data.transcode is not in this checkout)"
        if not dst.exists():
            _reencode(src, dst, PREPARED_GOP, PREPARED_SHORT_SIDE)
    else:
        how = "tanet_lightning.data.transcode.prepare_video"
        if not dst.exists():
            prepare_video(src, dst, gop=PREPARED_GOP, short_side=PREPARED_SHORT_SIDE)
    return dst, how


# ----------------------------------------------------------------------------------------------------
# backends: fn(path, clips) loads each clip (a list of frame-index arrays), opening the file every time


class _Given:
    """A sampler that hands the dataset the benchmark's clip indices, in order."""

    def __init__(self, clips):
        self.clips = iter(clips)

    def train(self, num_frames, rng):
        return next(self.clips)


_datasets: dict[tuple[str, str], VideoClipDataset] = {}


def run_ours(path: str, clips, decoder: str = "pyav") -> None:
    if (path, decoder) not in _datasets:  # built once, as a DataModule does; every item opens the file
        settings = ClipSettings(num_frames=8, short_side=256, crop_size=224)  # the recipes' train transform
        _datasets[path, decoder] = VideoClipDataset([VideoRecord(path, 0)], "train", BadFileLog(os.devnull, 1.0, 1),
                                                    settings, frames=FrameReader(decoder))
    dataset = _datasets[path, decoder]
    dataset.sampler = _Given(clips)
    for _ in clips:
        assert dataset[0]["valid"]


def run_pyav(path: str, clips, index) -> None:
    pts, keys = index
    reformat = io._get_reformatter()
    for idx in clips:
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


def run_ptv(path: str, clips, fps: float) -> None:
    from pytorchvideo.data.encoded_video import EncodedVideo

    for idx in clips:
        video = EncodedVideo.from_path(path, decoder="pyav", decode_audio=False)
        lo, hi = int(idx.min()), int(idx.max())
        clip = video.get_clip(lo / fps, (hi + 1) / fps)["video"]  # float32 C x T x H x W, every frame in the span
        clip[:, np.clip(idx - lo, 0, clip.shape[1] - 1)]
        video.close()


def run_decord(path: str, clips) -> None:
    import decord

    for idx in clips:
        decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1).get_batch(idx.tolist()).asnumpy()


def run_torchcodec(path: str, clips) -> None:
    from torchcodec.decoders import VideoDecoder

    for idx in clips:  # a decoder per clip, as every other backend opens the file
        VideoDecoder(path, num_ffmpeg_threads=1, seek_mode="exact", dimension_order="NHWC").get_frames_at(idx.tolist())


def read_demuxed(path: str, clips) -> None:
    for idx in clips:  # the index from a demux pass on every open
        io.read_video_frames(path, idx)


def read_sidecar(path: str, clips, index_file: Path) -> None:
    for idx in clips:  # the index from a file beside the video (what a prepared dataset's sidecar gives)
        with np.load(index_file) as z:
            demuxed = io._Demuxed(z["pts"], z["keys"], len(z["pts"]))
        wanted = np.unique(idx)
        with io._open_video(path) as (container, stream):
            size = (stream.codec_context.height, stream.codec_context.width)
            frames = io._decode_runs(container, stream, demuxed, wanted, size)
        np.stack([frames[int(f)] for f in idx])


# ----------------------------------------------------------------------------------------------------


def torchcodec_problem(path: Path) -> str | None:
    """Why torchcodec cannot run here (not installed, or its FFmpeg libraries do not load), else None."""
    try:
        from torchcodec.decoders import VideoDecoder

        VideoDecoder(str(path), num_ffmpeg_threads=1)
    except Exception as e:  # ImportError, or RuntimeError/OSError from loading libtorchcodec + FFmpeg
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160]}"
    return None


def pyav_ffmpeg_dir(folder: Path) -> Path | None:
    """Symlinks with the plain sonames (libavutil.so.60, ...) to the FFmpeg libraries PyAV bundles (and
    their own dependencies), so that torchcodec can load them; None when PyAV bundles none."""
    libs = Path(av.__file__).resolve().parent.parent / "av.libs"
    if not libs.is_dir():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    for lib in libs.iterdir():
        names = [lib.name]
        m = re.match(r"(lib(?:av|sw)\w+)-[0-9a-f]+\.so\.(\d+)", lib.name)
        if m:
            names.append(f"{m.group(1)}.so.{m.group(2)}")
        for name in names:
            if not (folder / name).exists():
                (folder / name).symlink_to(lib)
    return folder


def timed(fns: dict, runs: int, clip_sets: list) -> dict[str, float]:
    """Median over runs of clips per CPU-second, per backend.

    CPU time of this process (all its threads), not wall time: on a shared machine a process waiting for
    the core is not charged, so the rates measure the work each backend does. Backends alternate clip by
    clip (in a rotating order), so whatever else disturbs a run (caches, frequency) hits all alike."""
    rates = {name: [] for name in fns}
    names = list(fns)
    for r in range(runs):
        spent = dict.fromkeys(names, 0.0)
        for c, clip in enumerate(clip_sets[r]):
            for name in names[c % len(names):] + names[: c % len(names)]:
                t = time.process_time()
                fns[name](clips=[clip])
                spent[name] += time.process_time() - t
        for name in names:
            rates[name].append(len(clip_sets[r]) / spent[name])
    return {name: statistics.median(v) for name, v in rates.items()}


def clip_sets(kind: str, num_frames: int, clips: int, runs: int) -> list[list[np.ndarray]]:
    sampler = ClipSampler(kind, 8)
    return [[sampler.train(num_frames, rng) for _ in range(clips)] for rng in map(np.random.default_rng, range(runs))]


def demux_index(path: str):
    with io._open_video(path) as (c, s):
        d = io._demux(c, s)
    return d.pts, d.keys


def table(head: list[str], rows: list[list]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/tmp/tanet_bench_videos")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="small files, 1 run of 2 clips: a smoke test")
    ap.add_argument("--only", default="", help="only the files whose name contains this")
    args = ap.parse_args()
    if args.tiny:
        args.clips, args.runs = 2, 1
    sources = TINY if args.tiny else SOURCES

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core for everything, decoder threads included
    torch.set_num_threads(1)
    d = Path(args.dir) / ("tiny" if args.tiny else "")
    d.mkdir(parents=True, exist_ok=True)
    for name, spec in sources.items():
        if not (d / name).exists():
            t = time.perf_counter()
            generate(d / name, *spec)
            print(f"generated {name} in {time.perf_counter() - t:.1f} s")

    backends = ["ours", "pyav"]
    for mod, key in (("pytorchvideo", "ptv"), ("decord", "decord")):
        try:
            __import__(mod)
            backends.append(key)
        except ImportError as e:
            print(f"skipping {mod}: not installed ({e}); `pip install -e .[bench]` adds it")
    first = d / next(iter(sources))
    problem = torchcodec_problem(first)
    if problem and not problem.startswith(("ImportError", "ModuleNotFoundError")) and TORCHCODEC_ENV not in os.environ:
        libs = pyav_ffmpeg_dir(Path(args.dir) / "pyav_ffmpeg")
        if libs is not None:  # the dynamic loader reads LD_LIBRARY_PATH at start: run again with it
            env = {**os.environ, TORCHCODEC_ENV: problem,
                   "LD_LIBRARY_PATH": f"{libs}:{os.environ.get('LD_LIBRARY_PATH', '')}".rstrip(":")}
            sys.stdout.flush()
            os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if problem is None:
        backends += ["torchcodec", "ours_tc"]
        if TORCHCODEC_ENV in os.environ:
            print(f"torchcodec: no FFmpeg of its own here ({os.environ[TORCHCODEC_ENV][:100]}...); it runs on the "
                  f"FFmpeg libraries PyAV bundles (libavcodec {av.library_versions['libavcodec'][0]}, LD_LIBRARY_PATH)")
    else:
        print(f"skipping torchcodec: {problem} (`pip install -e .[bench]` and FFmpeg shared libraries)")

    prepared, how = {}, None
    for name in ("k340x256_g250.mp4", "k640x360_g250.mp4"):
        t = time.perf_counter()
        made = not d.joinpath(Path(name).stem + ".prepared.mp4").exists()
        prepared[name], how = prepared_copy(d / name)
        if made:
            print(f"prepared {name} in {time.perf_counter() - t:.1f} s")
    print(f"prepared copies: {how}")

    files = [(name, d / name) for name in sources if not args.only or args.only in name]
    files[2:2] = [(f"{name} prepared", p) for name, p in prepared.items() if not args.only or args.only in name]
    info, rows, indexes = {}, {}, {}

    def describe(label, path):
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            w, h, fps = vs.codec_context.width, vs.codec_context.height, float(vs.average_rate)
        pts, keys = indexes[label] = demux_index(str(path))
        k = np.searchsorted(pts, keys)
        info[label] = (w, h, fps, len(pts), int(np.diff(np.append(k, len(pts))).max()),
                       path.stat().st_size * 8e-3 / (len(pts) / fps))

    for label, path in files:
        describe(label, path)
        for kind in KINDS:
            sets = clip_sets(kind, info[label][3], args.clips, args.runs)
            fns = {"ours": partial(run_ours, str(path)), "pyav": partial(run_pyav, str(path), index=indexes[label]),
                   "ptv": partial(run_ptv, str(path), fps=info[label][2]), "decord": partial(run_decord, str(path)),
                   "torchcodec": partial(run_torchcodec, str(path)),
                   "ours_tc": partial(run_ours, str(path), decoder="torchcodec")}
            rows[label, kind] = timed({b: fns[b] for b in backends}, args.runs, sets)
            print(".", end="", flush=True)
    print()

    print("\nfiles: " + "; ".join(f"{k}: {w}x{h}, {n} frames, longest keyframe interval {g}, {kbps:.0f} kb/s"
                                  for k, (w, h, _, n, g, kbps) in info.items()))
    peers = [b for b in backends if b != "ours"]
    print("\nclips per CPU-second on one core (ours includes the train transform; the others return the 8 frames)")
    table(["file", "clips", *backends, *(f"ours/{b}" for b in peers)],
          [[label, KINDS[kind], *(r[b] for b in backends), *(r["ours"] / r[b] for b in peers)]
           for (label, kind), r in rows.items()])

    print(f"\nbefore vs after prepare (a keyframe every {PREPARED_GOP} frames, short side <= {PREPARED_SHORT_SIDE}): "
          "gain = after/before clips per CPU-second")
    prep_rows = []
    for name in prepared:
        if args.only and args.only not in name:
            continue
        for kind in KINDS:
            sets = clip_sets(kind, info[name][3], args.clips, args.runs)
            versions = {"before": (d / name, name), "after": (prepared[name], f"{name} prepared")}
            fns = {}
            for v, (path, label) in versions.items():
                fns["ours", v] = partial(run_ours, str(path))
                fns["pyav", v] = partial(run_pyav, str(path), index=indexes[label])
            r = timed(fns, args.runs, sets)
            gain = {b: r[b, "after"] / r[b, "before"] for b in ("ours", "pyav")}
            prep_rows.append([name, KINDS[kind], r["ours", "before"], r["ours", "after"], gain["ours"],
                              r["pyav", "before"], r["pyav", "after"], gain["pyav"], gain["ours"] / gain["pyav"]])
    table(["source", "clips", "ours before", "ours after", "ours gain", "pyav before", "pyav after", "pyav gain",
           "ours gain/pyav gain"], prep_rows)

    print("\nsidecar index vs a demux pass on every open (CPU ms per open; clips: frames only, no transform)")
    side_rows = []
    for label, path in files:
        index = demux_index(str(path))
        npz = path.with_suffix(".index.npz")
        np.savez(npz, pts=index[0], keys=index[1])

        def demux_once(clips, path=str(path)):
            for _ in clips:
                with io._open_video(path) as (c, s):
                    io._demux(c, s, io.KEEP_PACKET_BYTES)

        def load_once(clips, npz=npz, path=str(path)):
            for _ in clips:
                with io._open_video(path), np.load(npz) as z:
                    z["pts"], z["keys"]

        sets = clip_sets("dense", len(index[0]), args.clips, args.runs)
        r = timed({"demux": demux_once, "load": load_once}, args.runs, [s * 10 for s in sets])
        c = timed({"demux": partial(read_demuxed, str(path)),
                   "sidecar": partial(read_sidecar, str(path), index_file=npz)}, args.runs, sets)
        side_rows.append([label, 1e3 / r["demux"], 1e3 / r["load"], r["load"] / r["demux"], c["demux"], c["sidecar"],
                          c["sidecar"] / c["demux"]])
    table(["file", "open+demux ms", "open+index file ms", "demux/index time", "dense clips/CPU-s demux",
           "dense clips/CPU-s sidecar", "sidecar/demux"], side_rows)
    print(f"\nmedian of {args.runs} runs x {args.clips} clips, one core; torch {torch.__version__}, "
          f"PyAV {av.__version__} (FFmpeg libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))})")


if __name__ == "__main__":
    main()
