"""TAM's importance maps and kernels for a checkpoint (paper Figs 4-8):
``python -m tanet_lightning.visualize ckpt_path=CKPT videos=[a.mp4,b.mp4] block=stage4_6b [i3d_ckpt_path=I3D]``.

The recording and the plots are ``tanet_lightning.analysis.visualize``; this module reads the config,
the checkpoints and the videos, and writes the files into ``out_dir``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from . import config
from .analysis.visualize import (
    DEFAULT_SIZE,
    expand_videos,
    find_block,
    i3d_kernels,
    load_clip,
    plot_theta_hist,
    plot_violins,
    record,
    short_name,
)
from .base.errors import ConfigError, handle_user_errors
from .config import schema
from .models.load import Checkpoint, load_model

log = logging.getLogger("tanet_lightning")


def visualize(cfg: DictConfig) -> dict:
    """Record V and Theta at ``cfg.block`` for ``cfg.videos`` and write the plots to ``cfg.out_dir``.

    Returns {"paths": [written files], "videos": [...], "block": module path, "v", "theta", "logits",
    "i3d": (kernels or None)}.
    """
    schema.validate(cfg, "visualize")
    if OmegaConf.is_missing(cfg, "ckpt_path") or not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path is required: python -m tanet_lightning.visualize ckpt_path=PATH videos=[...]")
    size = cfg.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ConfigError(f"size must be null (the checkpoint's data config) or a positive crop size in pixels, "
                          f"got {size!r}")
    videos = cfg.get("videos")
    videos = expand_videos(list(videos) if isinstance(videos, ListConfig) else videos, cfg.get("video_root"))
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    ckpt = Checkpoint.read(cfg.ckpt_path)
    model = ckpt.build()
    find_block(model, cfg.block, "tam")  # a bad name fails before any video is decoded
    i3d, i3d_norm = None, cfg.get("i3d_norm", "l1")
    if cfg.get("i3d_ckpt_path"):  # likewise a checkpoint without 3x1x1 convs at that block
        i3d = i3d_kernels(load_model(cfg.i3d_ckpt_path, key="i3d_ckpt_path"), cfg.block, i3d_norm)
    t = model.num_frames
    data = ckpt.data_config or {}
    if not data:
        log.warning("%s has no saved data config: uniform clips at %dpx", cfg.ckpt_path, size or DEFAULT_SIZE)
    clips = torch.stack([load_clip(v, t, size, data) for v in videos])
    log.info("recording %s for %d videos (T=%d, %s sampling, %dpx)", cfg.block, len(videos), t,
             data.get("sampler", "uniform"), clips.shape[-1])
    rec = record(model, clips, cfg.block)

    block = str(cfg.block).lower()
    paths = [plot_violins(rec, videos, block, i3d, i3d_norm, out / f"violins_{block}.png")]
    if rec["theta"] is not None:
        for n, (video, theta) in enumerate(zip(videos, rec["theta"])):
            name = f"theta_hist_{block}_{n:02d}_{short_name(video)}.png"
            paths.append(plot_theta_hist(theta, video, block, out / name))
    arrays = {k: rec[k] for k in ("v", "theta", "logits") if rec[k] is not None}
    if i3d is not None:
        arrays["i3d"] = i3d
    np.savez(out / f"kernels_{block}.npz", videos=np.asarray(videos), **arrays)
    paths.append(out / f"kernels_{block}.npz")
    log.info("wrote %d files to %s", len(paths), out)
    return {"paths": paths, "videos": videos, "i3d": i3d, **rec}


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="visualize")
@handle_user_errors
def main(cfg: DictConfig) -> None:
    visualize(cfg)


if __name__ == "__main__":
    main()
