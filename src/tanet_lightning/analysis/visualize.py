"""What a TA-block learned, per video (paper Figs 4-8, supplementary Figs 2-3); the application is
``python -m tanet_lightning.visualize ckpt_path=CKPT videos=[a.mp4,b.mp4] block=stage4_6b [i3d_ckpt_path=I3D]``.

Forward hooks on the chosen block's local branch ``L`` and global branch ``G`` record, for every video,
the importance map V (C, T) and the video-adaptive kernel Theta (C, K); the model is not changed.
Plots (PNG, in ``out_dir``):

* ``violins_<block>.png``  (Figs 4-6) one column per video: V per frame (top row) and Theta per
  temporal offset t = -1, 0, 1 (bottom row), each violin over the C channels; with ``i3d_ckpt_path``
  an extra column holds the 3x1x1 kernels of the I3D model at the same block, per tap;
* ``theta_hist_<block>_<NN>_<video>.png``  (Figs 7-8) one per video: a histogram of Theta over the
  channels for each temporal offset;
* ``kernels_<block>.npz``  the recorded arrays, to re-plot without the model.

Block names follow the paper: ``stage4_6b`` is the 6th block (1-based) of res4 (timm ``layer3.5``).
The trailing letter is the paper's position letter; any of a-d is accepted and the block's
``temporal`` child is used wherever it sits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from matplotlib import cbook, mlab
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..base.errors import ConfigError
from ..data.files import VIDEO_EXTENSIONS, find_videos
from ..data.formats import read_video_list
from ..data.protocol import TestProtocol
from ..data.settings import ClipSettings
from ..data.transforms import eval_transform
from ..models.backbones import family_of
from ..models.insertion import blocks_by_stage
from ..models.temporal import TemporalAdaptiveModule, TemporalConv

FRAME_EXTENSIONS = (".jpg",)  # frame folders are read with read_video_frames' default 00001.jpg names
BLOCK_RE = re.compile(r"^stage([2-5])_(\d+)([a-d])$", re.IGNORECASE)
KDE_MAX_POINTS = 10_000  # I3D taps have up to ~1M weights; a violin outline needs far fewer


# ------------------------------------------------------------------------------------------------
# Locating a block by its paper name


def _backbone(model: nn.Module) -> nn.Module:
    """The 2-D backbone of a VideoClassifier (or of a module holding one as ``net``), or the backbone itself."""
    net = getattr(model, "net", model)
    return getattr(net, "backbone", net)


def _has_tam(block: nn.Module) -> bool:
    return isinstance(getattr(block, "temporal", None), TemporalAdaptiveModule)


def _has_tconv(block: nn.Module) -> bool:
    return any(isinstance(m, TemporalConv) for m in block.modules())


def _block_names(backbone: nn.Module, family: str, keep) -> list[str]:
    """Paper names of the blocks that pass `keep`, e.g. ['stage4_1b', ..., 'stage4_6b']."""
    names = []
    for stage, blocks in blocks_by_stage(backbone, family).items():
        for i, (_, block) in enumerate(blocks, 1):
            if keep(block):
                names.append(f"{stage.replace('res', 'stage')}_{i}{getattr(block, 'position', 'b')}")
    return names


def find_block(model: nn.Module, block: str, kind: str = "tam") -> tuple[str, nn.Module]:
    """(module path inside the backbone, block) for a paper block name; kind 'tam' or 'i3d'.

    A clear error, listing the valid names, when the name is malformed, the block does not exist,
    or it holds no TAM (kind='tam') / no 3x1x1 conv (kind='i3d').
    """
    backbone = _backbone(model)
    family = family_of(backbone)
    keep = _has_tam if kind == "tam" else _has_tconv
    what = "temporal adaptive module (TAM)" if kind == "tam" else "I3D 3x1x1 conv"

    def bad(reason: str) -> ConfigError:
        valid = _block_names(backbone, family, keep)
        listing = ", ".join(valid) if valid else f"none: this model has no block with a {what}"
        return ConfigError(f"block={block!r}: {reason}. Valid block names for this checkpoint: {listing}")

    m = BLOCK_RE.match(str(block).strip())
    if m is None:
        raise bad("expected 'stage{2..5}_{i}{a..d}', e.g. stage4_6b = 6th block of res4")
    stage, index = int(m.group(1)), int(m.group(2))
    blocks = blocks_by_stage(backbone, family)[f"res{stage}"]
    if not blocks:
        raise bad(f"this {family} backbone has no blocks in stage {stage}")
    if not 1 <= index <= len(blocks):
        raise bad(f"stage {stage} has {len(blocks)} blocks (numbered from 1)")
    path, found = blocks[index - 1]
    if not keep(found):
        raise bad(f"block {path} holds no {what}")
    return path, found


# ------------------------------------------------------------------------------------------------
# Recording V and Theta with forward hooks


def record(model: nn.Module, clips: torch.Tensor, block: str, batch_size: int = 1) -> dict:
    """Run `clips` (N, T, 3, H, W), normalised, through `model`; capture the block's V and Theta.

    Returns numpy arrays: ``v`` (N, C, T) -- (N, C, 1) for an SE gate -- in (0, 1), ``theta``
    (N, C, K) summing to 1 over K (either is None when the module has no such branch), ``logits``
    (N, num_classes), and ``block`` (the module path). Hooks are removed even if the forward fails.
    """
    if clips.dim() != 5:
        raise ValueError(f"clips must be (N, T, 3, H, W), got shape {tuple(clips.shape)}")
    path, found = find_block(model, block, "tam")
    tam = found.temporal
    captured: dict[str, list[torch.Tensor]] = {"v": [], "theta": []}

    def keep(key):
        return lambda module, args, output: captured[key].append(output.detach().float().cpu())

    hooks = [branch.register_forward_hook(keep(key)) for key, branch in (("v", tam.L), ("theta", tam.G))
             if branch is not None]
    was_training = model.training
    model.eval()  # BN running statistics, no dropout: the kernels a test-time forward uses
    logits = []
    try:
        with torch.inference_mode():
            for chunk in clips.split(batch_size):  # one video at a time keeps 224px ResNet-50 small
                logits.append(model(chunk).float().cpu())
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    out = {k: torch.cat(v).numpy() if v else None for k, v in captured.items()}
    return {"block": path, **out, "logits": torch.cat(logits).numpy()}


def i3d_kernels(model: nn.Module, block: str, norm: str = "l1") -> np.ndarray:
    """The 3x1x1 kernels of an I3D model at `block`, one row per (out, in) pair: (out*in, K).

    norm='l1' divides each kernel by the sum of its taps' absolute values, so it is on Theta's scale
    (Theta is a softmax: non-negative, sums to 1); norm='none' gives the raw weights.
    """
    if norm not in ("l1", "none"):
        raise ConfigError(f"i3d_norm must be 'l1' or 'none', got {norm!r}")
    _, found = find_block(model, block, "i3d")
    conv = next(m for m in found.modules() if isinstance(m, TemporalConv)).conv
    w = conv.weight.detach().float().cpu()[..., 0, 0].flatten(0, 1)  # (out*in, K)
    if norm == "l1":
        w = w / w.abs().sum(-1, keepdim=True).clamp_min(1e-12)
    return w.numpy()


# ------------------------------------------------------------------------------------------------
# Inputs: checkpoints and videos


def expand_videos(videos: str | Sequence[str], video_root: str | None = None) -> list[str]:
    """Video paths from a list whose entries are video files, frame folders, directories of videos,
    or MMAction2 video lists (``.txt``: ``relative/path label`` per line, relative to `video_root`,
    default the list's own directory)."""
    if isinstance(videos, (str, Path)):
        videos = [videos]
    paths: list[str] = []
    for entry in videos:
        p = Path(str(entry))
        if p.is_file() and p.suffix == ".txt":
            paths += [r.path for r in read_video_list(p, video_root or p.parent, key="videos")]
        elif p.is_file():
            paths.append(str(p))
        elif p.is_dir():
            found = find_videos(p, recursive=False).videos
            suffixes = {f.suffix.lower() for f in p.iterdir()}
            if found:
                paths += found
            elif suffixes & set(FRAME_EXTENSIONS):  # a frame folder: read_video_frames reads it as one video
                paths.append(str(p))
            else:
                raise ConfigError(f"videos: directory {entry} holds neither videos {VIDEO_EXTENSIONS} "
                                 f"nor frames {FRAME_EXTENSIONS}")
        else:
            raise ConfigError(f"videos: {entry} does not exist (give video files, frame folders, "
                                    "directories of videos, or a 'path label' .txt list)")
    if not paths:
        raise ConfigError("videos is empty: pass videos=[a.mp4,b.mp4] (or a directory / .txt video list)")
    return paths


DEFAULT_SIZE = ClipSettings.crop_size  # short side and crop for checkpoints that carry no data config


def load_clip(path: str, num_frames: int, size: int | None = None, data: dict | None = None) -> torch.Tensor:
    """The checkpoint's single test view of a video: its sampler's centre clip (dense: the middle
    window; uniform: TSN segment centres), its short side and test crop, its normalisation. ``size``
    overrides short side and crop; without a data config the clip is uniform at ``DEFAULT_SIZE``.

    Returns float32 (T, 3, crop, crop).
    """
    protocol = TestProtocol.from_dict({**data, "num_frames": num_frames}) if data else \
        TestProtocol(num_frames, short_side=DEFAULT_SIZE, crop_size=DEFAULT_SIZE)
    if size:
        protocol = protocol.replace(short_side=size, crop_size=size)
    frames = protocol.read(path, protocol.clip_sampler.val)
    return protocol.normalize(eval_transform(frames, protocol.crop_size))


# ------------------------------------------------------------------------------------------------
# Plots


def _offsets(k: int) -> list[int]:
    """Tap k of Theta reads frame t + k - K//2 (see temporal_aggregate)."""
    return [i - k // 2 for i in range(k)]


def _kde(data: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Violin density; a fixed subsample for huge inputs (extrema and median still use all data)."""
    if data.size > KDE_MAX_POINTS:
        data = np.random.default_rng(0).choice(data, KDE_MAX_POINTS, replace=False)
    if np.ptp(data) == 0:  # constant values: a Gaussian KDE is singular, draw a flat sliver
        return np.ones_like(coords)
    return mlab.GaussianKDE(data, "scott").evaluate(coords)


def _violins(ax, columns: np.ndarray, labels: list[str], color: str) -> None:
    """One violin per column of `columns` (rows are the samples), with min, median and max marked."""
    stats = cbook.violin_stats([columns[:, j] for j in range(columns.shape[1])], _kde)
    parts = ax.violin(stats, positions=range(len(labels)), showmedians=True, showextrema=True)
    for body in parts["bodies"]:
        body.set_facecolor(color)
        body.set_alpha(0.6)
    ax.set_xticks(range(len(labels)), labels)
    ax.grid(axis="y", alpha=0.3)


def _new_figure(ncols: int, nrows: int, figsize: tuple[float, float], **kw):
    """An Agg figure without pyplot: no global backend state, no display, nothing left open."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def short_name(path: str, width: int = 28) -> str:
    name = re.sub(r"[^\w.-]+", "_", Path(path).stem)  # also used in file names
    return name if len(name) <= width else name[: width - 1] + "~"


def plot_violins(rec: dict, videos: list[str], block: str, i3d: np.ndarray | None, i3d_norm: str,
                 path: Path) -> Path:
    """Figs 4-6: rows V (per frame) and Theta (per offset), one column per video (+ I3D)."""
    rows = [r for r in ("v", "theta") if rec[r] is not None]
    ncols = len(videos) + (i3d is not None)
    fig, axes = _new_figure(ncols, len(rows), (2.8 * ncols + 0.6, 2.6 * len(rows) + 1.0))
    for i in range(len(rows)):  # one y scale per row across videos, so medians compare across columns
        for j in range(1, len(videos)):
            axes[i, j].sharey(axes[i, 0])
    pred = rec["logits"].argmax(-1)
    for j, video in enumerate(videos):
        for i, r in enumerate(rows):
            ax, values = axes[i, j], rec[r][j].T  # (T or K, C) -> columns per frame / offset
            if r == "v":
                n = values.shape[0]
                labels = [f"{f + 1}" for f in range(n)] if n > 1 else ["all (SE)"]
                _violins(ax, values.T, labels, "tab:orange")
                ax.set_xlabel("frame")
            else:
                _violins(ax, values.T, [f"t={o}" for o in _offsets(values.shape[0])], "tab:blue")
                ax.set_xlabel("temporal offset")
            if j == 0:
                ax.set_ylabel("importance map V\n(local branch)" if r == "v" else "kernel Θ\n(global branch)")
        axes[0, j].set_title(f"{short_name(video)}\npred class {pred[j]}", fontsize=9)
    if i3d is not None:
        j = ncols - 1
        for i, r in enumerate(rows):
            ax = axes[i, j]
            if r == "theta" or len(rows) == 1:
                _violins(ax, i3d, [f"t={o}" for o in _offsets(i3d.shape[1])], "tab:green")
                ax.set_xlabel("temporal offset")
            else:
                ax.text(0.5, 0.5, "I3D has no\nimportance map", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
        norm = "w / Σ|w| per kernel" if i3d_norm == "l1" else "raw weights"
        axes[0, j].set_title(f"I3D 3x1x1 (shared by all videos)\n{norm}, {i3d.shape[0]} kernels", fontsize=9)
    fig.suptitle(f"{block}: distributions over the {rec[rows[0]].shape[1]} channels\n"
                 "(violins mark min, median, max)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_theta_hist(theta: np.ndarray, video: str, block: str, path: Path, bins: int = 30) -> Path:
    """Figs 7-8: for one video, a histogram of Theta over the channels for each temporal offset."""
    k = theta.shape[1]
    fig, axes = _new_figure(k, 1, (3.0 * k, 2.8), sharey=True)
    # one x scale for all offsets, so the weight at t=0 can be compared with its neighbours at a glance
    lo, hi = float(theta.min()), float(theta.max())
    pad = max(1e-6, 0.05 * (hi - lo))
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    for ax, o, w in zip(axes[0], _offsets(k), theta.T):
        ax.hist(w, bins=edges, color="tab:blue", alpha=0.8)
        ax.set_title(f"t={o}  (mean {w.mean():.3f})", fontsize=9)
        ax.set_xlabel("the distribution of weights")
    axes[0, 0].set_ylabel("channels")
    fig.suptitle(f"{short_name(video, 48)}: kernel Θ at {block}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
