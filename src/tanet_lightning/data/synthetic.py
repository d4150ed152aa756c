"""Embedded synthetic video datasets whose classes differ only in time: two task families (data.synthetic.task).

* motion (the default): how a textured bar moves. 8 classes = 4 time-reversal pairs (move left/right,
  up/down, rotate cw/ccw like a clock hand, grow/shrink). Every per-video parameter is drawn from a
  distribution that time reversal maps onto the paired class, so the set of frames of a video says
  nothing about its class within a pair: a per-frame model with averaged scores (C2D) is at chance inside
  each pair (50 % overall at best), a temporal model is not. Neighbouring frames already tell the pair.
* order: which of two short flashes came first (left/right, top/bottom, red/blue, small/big), with at
  least MIN_GAP - 1 of the 8 slots of static background between them: again 4 reversal pairs, but the
  direction is only in the order of two events half a clip apart (``render_order``).

A horizontal flip swaps left<->right (and cw<->ccw), so flip augmentation stays on with each task's
label swaps (``TASKS``).

Each variant (generator version + settings) lives in its own directory, ``synthetic_dir(data.root, spec)``:
<variant>/videos/<split>/<class>_<i>.mp4 (H.264 yuv420p, GOP drawn from GOPS), mm video lists
<variant>/{train,val,test}.txt, <variant>/classes.txt and <variant>/manifest.json (version and settings).
It is generated once, into a temporary folder renamed into place, and never replaced.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Literal

import av
import numpy as np
from pydantic import Field

from ..base import locks
from ..base.errors import DataError
from ..base.files import atomic_dir, this_hosts_temps
from ..base.typed import Count, Seed

VERSION = 5
CLASS_NAMES = ["move_left", "move_right", "move_up", "move_down", "rotate_cw", "rotate_ccw", "grow", "shrink"]
FLIP_LABEL_MAP = {0: 1, 4: 5}  # left<->right, cw<->ccw (symmetric pairs are implied)
ORDER_CLASSES = ["left_then_right", "right_then_left", "top_then_bottom", "bottom_then_top",
                 "red_then_blue", "blue_then_red", "small_then_big", "big_then_small"]
TASKS = {  # data.synthetic.task -> (class names, horizontal-flip label swaps; symmetric pairs implied)
    "motion": (CLASS_NAMES, FLIP_LABEL_MAP),
    "order": (ORDER_CLASSES, {0: 1}),
}
GOPS = (4, 8, 16, 300)  # 300 > any video length: a single keyframe
PIVOT = -0.75  # object coordinate (u in [-1, 1] along the bar) that a rotating bar turns about: near its tail
SLOTS = 8  # the order task's time slots: the TSN segments of an 8-frame clip (data.num_frames=8)
MIN_GAP = 4  # the order task's events are at least this many slots apart (3 or more blank slots between)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SyntheticSpec:
    seed: Seed = 0
    train_per_class: Count = 40
    val_per_class: Count = 10
    test_per_class: Count = 10
    size: Annotated[int, Field(ge=16)] = 48  # square frames, even for yuv420p
    min_frames: Count = 16
    max_frames: Count = 24
    fps: Count = 15
    qp: Annotated[int, Field(ge=0, le=51)] = 20  # x264's quantiser
    task: Literal[tuple(TASKS)] = "motion"  # motion | order (TASKS)

    def __post_init__(self):
        if self.task not in TASKS:
            raise DataError(f"data.synthetic.task={self.task!r} is not a synthetic task; give one of "
                            f"{', '.join(TASKS)}")
        if self.task == "order" and not _order_lengths(self):
            raise DataError(f"data.synthetic.task=order needs a video length that is a multiple of {SLOTS} frames "
                            f"between data.synthetic.min_frames={self.min_frames} and max_frames={self.max_frames}: "
                            f"widen them (e.g. 16 and 24)")


def class_names(task: str) -> list[str]:
    return list(TASKS[task][0])


def flip_label_map(task: str) -> dict[int, int]:
    return dict(TASKS[task][1])


def _texture(rng: np.random.Generator, size: int, cells: int, lo: int, hi: int) -> np.ndarray:
    """Blocky random colour texture (size, size, 3) float: coarse cells make orientation visible."""
    coarse = rng.integers(lo, hi, (cells, cells, 3)).astype(np.float32)
    rep = -(-size // cells)
    return np.kron(coarse, np.ones((rep, rep, 1), np.float32))[:size, :size]


def _trajectory(label: int, n: int, size: int, rng: np.random.Generator):
    """Per-frame (cx, cy, angle, scale) arrays and the pivot (object coordinate u the object turns about).
    Each reversal pair shares one symmetric distribution."""
    t = np.linspace(-0.5, 0.5, n)  # centred time: reversal = t -> -t
    cx = np.full(n, size / 2 + rng.uniform(-0.08, 0.08) * size)
    cy = np.full(n, size / 2 + rng.uniform(-0.08, 0.08) * size)
    angle = np.full(n, rng.uniform(0, 2 * np.pi))
    scale = np.ones(n)
    sign = 1.0 if label % 2 == 0 else -1.0  # first class of a pair runs "forward"
    pair = label // 2
    if pair == 0:  # move left (0) / right (1): image x decreases for left
        cx = cx - sign * rng.uniform(0.35, 0.5) * size * t
    elif pair == 1:  # move up (2) / down (3): image y decreases for up
        cy = cy - sign * rng.uniform(0.35, 0.5) * size * t
    elif pair == 2:  # rotate cw (4) / ccw (5) on screen (y points down, so cw = increasing angle)
        # like a clock hand: turning about its tail, the capped end sweeps a wide arc, so at 32 px a step
        # of the 8-frame clip moves it ~3-5 px (about a translation's step); about its centre it moved ~1 px
        # and the pair was the main job's only errors
        angle = angle + sign * rng.uniform(0.9, 1.3) * np.pi * t
        return cx, cy, angle, scale, PIVOT
    else:  # grow (6) / shrink (7)
        ratio = rng.uniform(1.7, 2.3)
        scale = ratio ** (sign * t) / np.sqrt(ratio) * 1.15
    return cx, cy, angle, scale, 0.0


def render_video(label: int, rng: np.random.Generator, spec: SyntheticSpec) -> np.ndarray:
    """(n, size, size, 3) uint8 frames of one video."""
    n, s = int(rng.integers(spec.min_frames, spec.max_frames + 1)), spec.size
    background = _texture(rng, s, int(rng.integers(6, 12)), 50, 130)  # low contrast: the object stands out
    obj_size = int(rng.integers(s // 4, s // 3 + 1))  # long side of the object at scale 1
    obj = _texture(rng, 64, 3, 0, 256)  # sampled in object coordinates [-1, 1]^2; 3x3 cells survive yuv420
    cx, cy, angle, scale, pivot = _trajectory(label, n, s, rng)
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    frames = np.empty((n, s, s, 3), np.uint8)
    for f in range(n):
        # inverse map every pixel into object coordinates (rotate by -angle, divide by half-size)
        dx, dy = xs - cx[f], ys - cy[f]
        c, si = np.cos(angle[f]), np.sin(angle[f])
        half = obj_size * scale[f] / 2
        u, v = (c * dx + si * dy) / half + pivot, (-si * dx + c * dy) / half
        # a 2:1 bar with a bright cap on one end (in every class): at 32 px a rotation then shows as
        # the cap travelling around the centre, readable like a translation
        inside = (np.abs(u) < 1) & (np.abs(v) < 0.5)
        cap = inside & (u > 0.5)
        iu = np.clip(((u + 1) * 32).astype(np.int64), 0, 63)
        iv = np.clip(((v + 1) * 32).astype(np.int64), 0, 63)
        img = np.where(inside[..., None], obj[iv, iu], background)
        img = np.where(cap[..., None], np.float32(245.0), img)
        img = img + rng.normal(0, 4, img.shape)  # sensor noise: no two frames identical
        frames[f] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def _order_lengths(spec: SyntheticSpec) -> list[int]:
    return [n for n in range(spec.min_frames, spec.max_frames + 1) if n % SLOTS == 0]


def render_order(label: int, rng: np.random.Generator, spec: SyntheticSpec) -> np.ndarray:
    """(n, size, size, 3) uint8 frames of one order-task video: two short flashes far apart in time.

    The video is SLOTS equal slots (n a multiple of SLOTS, so every slot is one TSN segment of an 8-frame
    clip: a training clip's random frame and a test clip's centre frame of a slot both see it). Flash A
    fills one slot, flash B a slot at least MIN_GAP later, the slots between are the static background.
    Classes 2k / 2k+1 are A-then-B / B-then-A; the slots are drawn symmetrically under time reversal, so
    the set of frames says nothing about the class: only the order of two events >= 4 slots apart does.
    """
    n, s = int(rng.choice(_order_lengths(spec))), spec.size
    per = n // SLOTS
    background = _texture(rng, s, int(rng.integers(6, 12)), 50, 130)
    gap = int(rng.integers(MIN_GAP, SLOTS))
    first = int(rng.integers(0, SLOTS - gap))
    slots = (first, first + gap)  # A's slot, B's slot for the first class of a pair; reversed for the second
    if label % 2:
        slots = slots[::-1]
    pair = label // 2
    jitter = rng.uniform(-0.06, 0.06, 2) * s
    centre = np.array([s / 2, s / 2]) + jitter
    radius = np.full(2, rng.uniform(0.11, 0.14) * s)
    colour = np.full((2, 3), 240.0)
    offset = rng.uniform(0.22, 0.28) * s
    pos = np.stack([centre, centre])
    if pair == 0:  # left, right: x
        pos[:, 0] += (-offset, offset)
    elif pair == 1:  # top, bottom: y (down)
        pos[:, 1] += (-offset, offset)
    elif pair == 2:  # red, blue at the centre
        colour = np.array([[230.0, 40, 40], [40, 70, 240]])
    else:  # small, big disc at the centre
        radius = np.array([0.08, 0.2]) * s * rng.uniform(0.9, 1.1)
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    frames = np.empty((n, s, s, 3), np.uint8)
    for f in range(n):
        img = background.copy()
        for event, slot in enumerate(slots):
            if f // per == slot:
                disc = (xs - pos[event, 0]) ** 2 + (ys - pos[event, 1]) ** 2 < radius[event] ** 2
                img = np.where(disc[..., None], colour[event], img)
        img = img + rng.normal(0, 4, img.shape)
        frames[f] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


RENDER = {"motion": render_video, "order": render_order}


def write_mp4(path: Path, frames: np.ndarray, fps: int, gop: int, qp: int) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.thread_count = (
            1  # tiny frames: threads cost more than they give, and stay deterministic
        )
        # constant qp, not crf: x264's rate control was seen to make byte-different files from equal input
        stream.options = {
            "qp": str(qp),
            "preset": "fast",
            "x264-params": f"keyint={gop}:min-keyint={min(gop, 4)}:scenecut=0",
        }
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts, frame.time_base = (
                i,
                Fraction(1, fps),
            )  # unset pts make x264's rate control irreproducible
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _make_video(root: Path, spec: SyntheticSpec, split_id: int, label: int, i: int) -> tuple[str, int, int]:
    """Render and encode one video; its RNG is seeded by its own coordinates, so any order gives the same file."""
    rng = np.random.default_rng([spec.seed, split_id, label, i])
    frames = RENDER[spec.task](label, rng, spec)
    gop = GOPS[int(rng.integers(len(GOPS)))]
    rel = f"videos/{SPLITS[split_id]}/{class_names(spec.task)[label]}_{i:04d}.mp4"
    write_mp4(root / rel, frames, spec.fps, gop, spec.qp)
    return rel, len(frames), gop


def _die_with_parent(parent: int) -> None:
    """A render worker ends with its generator: the forked workers share the generator's lock, so orphans of
    a killed generator (SIGKILL, OOM) would hold it and every later run would wait forever."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the generator died before prctl took effect
        os._exit(1)


def _generate(root: Path, spec: SyntheticSpec, workers: int) -> dict:
    counts = {"train": spec.train_per_class, "val": spec.val_per_class, "test": spec.test_per_class}
    jobs = [(split_id, label, i) for split_id, split in enumerate(SPLITS)
            for label in range(len(TASKS[spec.task][0])) for i in range(counts[split])]
    for split in SPLITS:
        (root / "videos" / split).mkdir(parents=True, exist_ok=True)
    # rendering is numpy and x264 in one thread per video: processes, one per core, halve a first run
    # on 2 cores; the files are byte-identical to a serial run (per-video seeds, single-thread x264)
    make = functools.partial(_make_video, root, spec)
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
            made = list(pool.map(make, *zip(*jobs), chunksize=16))
    else:
        made = [make(*job) for job in jobs]
    stats = {"videos": len(made), "frames": sum(n for _, n, _ in made), "gops": {str(g): 0 for g in GOPS}}
    lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    for (split_id, label, _), (rel, _, gop) in zip(jobs, made):
        lines[SPLITS[split_id]].append(f"{rel} {label}")
        stats["gops"][str(gop)] += 1
    for split in SPLITS:
        (root / f"{split}.txt").write_text("\n".join(lines[split]) + "\n")
    (root / "classes.txt").write_text("\n".join(class_names(spec.task)) + "\n")
    return stats


def synthetic_dir(base: str | Path, spec: SyntheticSpec) -> Path:
    """The directory of one variant of the dataset: ``<base>/<readable settings>_<hash>``. Each setting
    (and the generator version) gets its own, so a run with other ``data.synthetic.*`` never replaces
    the videos another job is reading."""
    wanted = json.dumps({"version": VERSION, "spec": asdict(spec)}, sort_keys=True)
    digest = hashlib.sha256(wanted.encode()).hexdigest()[:8]
    task = "" if spec.task == "motion" else f"{spec.task}_"
    return Path(base) / (f"{task}{spec.train_per_class}-{spec.val_per_class}-{spec.test_per_class}"
                         f"_{spec.size}px_seed{spec.seed}_{digest}")


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def _matches(manifest: dict | None, wanted: dict) -> bool:
    return manifest is not None and {k: manifest.get(k) for k in wanted} == wanted


def ensure_synthetic(root: str | Path, spec: SyntheticSpec = SyntheticSpec(), workers: int | None = None) -> dict:
    """The dataset of ``spec`` at ``root`` (see ``synthetic_dir``): read when complete, else generated.

    Generation writes into a temporary folder beside ``root`` and renames it into place, so a reader sees
    the whole dataset or none; a file lock makes concurrent processes (DDP ranks, parallel jobs) wait for
    the first one. An existing ``root`` holding anything else is refused, never replaced. `workers`
    processes render the videos (None = one per available core, at most 8). Returns the manifest.
    """
    root = Path(root)
    wanted = {"version": VERSION, "spec": asdict(spec), "classes": class_names(spec.task)}
    manifest = _read_manifest(root)
    if _matches(manifest, wanted):  # complete already: no lock file (the data may be read-only)
        return manifest
    root.parent.mkdir(parents=True, exist_ok=True)
    with locks.exclusive(root.parent / f".{root.name}.lock"):  # waits for the process generating it
        manifest = _read_manifest(root)
        if _matches(manifest, wanted):  # another process generated it while we waited
            return manifest
        if root.exists():
            what = f"synthetic data of other settings {manifest.get('spec')} (version {manifest.get('version')})" \
                if manifest else "other files"
            raise DataError(f"{root} holds {what}, not data.synthetic={asdict(spec)}: it is not replaced (a job "
                            f"may be reading it). Remove it, or set data.root to another folder")
        # the temporary folders of this host's killed generators go (a live one would hold the lock), another
        # host's are left alone (its lock may not reach us on a network disk)
        for stale in this_hosts_temps(root):
            shutil.rmtree(stale, ignore_errors=True)
        start = time.perf_counter()
        if workers is None:
            workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        try:
            with atomic_dir(root) as tmp:  # renamed into place whole; fails if another host made root meanwhile
                stats = _generate(tmp, spec, workers)
                manifest = {**wanted, "stats": stats, "seconds": round(time.perf_counter() - start, 2)}
                (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        except OSError:
            if not _matches(_read_manifest(root), wanted):
                raise
            manifest = _read_manifest(root)
    return manifest
