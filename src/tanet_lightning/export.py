"""Export a checkpoint's network: ``python -m tanet_lightning.export ckpt_path=PATH [format=onnx] [out=model.onnx]
[video=a.mp4]``.

The ONNX graph takes a normalised clip batch ``video`` (B, T, 3, S, S) with a dynamic batch axis and
returns ``logits`` (B, num_classes). TAM's fused aggregation is a custom PyTorch op; it is traced in its
plain-ops form (pad, slices, multiplies, adds). After writing, onnxruntime (``pip install
tanet-lightning[export]``) runs the file on a clip (``video``'s test views, else a random clip) and
the largest logit difference to PyTorch is printed.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from . import config
from .base.errors import ConfigError, handle_user_errors
from .models.temporal import plain_aggregation
from .predict import Predictor
from .training import schema

log = logging.getLogger("tanet_lightning")


def export_onnx(predictor: Predictor, out: str | Path, opset: int = 17) -> Path:
    """Write the network as ONNX (dynamic batch); the example clip has batch 2 so no size is baked in as 1."""
    t, s = predictor.protocol.num_frames, predictor.protocol.crop_size
    model = predictor.model.float().cpu().eval()
    example = torch.randn(2, t, 3, s, s)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with plain_aggregation(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks that are constant for a given T
        torch.onnx.export(model, (example,), str(out), input_names=["video"], output_names=["logits"],
                          dynamic_axes={"video": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    return out


def check_onnx(path: str | Path, predictor: Predictor, video: str | None = None) -> float:
    """Max |logit difference| between onnxruntime and PyTorch on a video's test views (or a random clip)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ConfigError("check=true needs onnxruntime: pip install 'tanet-lightning[export]' "
                          "(or check=false)") from e
    c = predictor.protocol
    if video is not None:
        views = predictor.clip_views(video)
    else:
        t, s = c.num_frames, c.crop_size
        g = torch.Generator().manual_seed(0)
        views = torch.randint(0, 256, (2, t, 3, s, s), generator=g, dtype=torch.uint8)
    x = c.normalize(views)
    with torch.no_grad():
        want = predictor.model.float().cpu().eval()(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"video": x.numpy()})[0]
    return float(abs(got - want).max())


def export(cfg: DictConfig) -> tuple[Path, float | None]:
    schema.validate(cfg, "export")
    if cfg.format != "onnx":
        raise ConfigError(f"format={cfg.format!r}: only onnx is supported")
    predictor = Predictor.from_checkpoint(cfg.ckpt_path)
    out = export_onnx(predictor, cfg.out, int(cfg.opset))
    c = predictor.protocol
    mean, std = (tuple(round(v, 4) for v in vs) for vs in (c.mean, c.std))
    print(f"wrote {out}: input video (batch, {c.num_frames}, 3, {c.crop_size}, {c.crop_size}) normalised "
          f"with mean {mean} std {std}, output logits (batch, {predictor.model.num_classes})")
    diff = None
    if cfg.check:
        diff = check_onnx(out, predictor, cfg.get("video"))
        what = cfg.video if cfg.get("video") else "a random clip"
        print(f"onnxruntime vs PyTorch on {what}: max |logit difference| = {diff:.2e}")
        if diff > float(cfg.tolerance):
            raise SystemExit(f"the ONNX model differs from PyTorch by {diff:.2e} > tolerance={cfg.tolerance}")
    return out, diff


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="export")
@handle_user_errors
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
