"""Export a checkpoint's network: ``python -m tanet_lightning.export ckpt_path=PATH [format=onnx|hf] [out=...]
[video=a.mp4] [repo_id=OWNER/NAME]``.

``format=onnx``: the ONNX graph takes a normalised clip batch ``video`` (B, T, 3, S, S) with a dynamic
batch axis and returns ``logits`` (B, num_classes). TAM's fused aggregation is a custom PyTorch op; it is
traced in its plain-ops form (pad, slices, multiplies, adds). After writing, onnxruntime (``pip install
tanet-lightning[export]``) runs the file on a clip (``video``'s test views, else a random clip) and
the largest logit difference to PyTorch is printed.

``format=hf``: a save_pretrained folder (models/hub.py: ``model.safetensors``, ``config.json``, the model
card ``README.md``) with what the checkpoint and its run directory know (dataset, split fingerprint,
test results, training command); read back with ``from_pretrained`` and compared on the same clip.
``repo_id=OWNER/NAME`` then uploads it with huggingface_hub (needs a login and the network).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from . import config
from .analysis.zoo import release_of_file
from .base.errors import ConfigError, handle_user_errors
from .config import schema
from .models.hub import push_to_hub
from .models.load import Checkpoint
from .models.temporal import plain_aggregation
from .predict import Predictor
from .runs import outputs

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


def example_clips(predictor: Predictor, video: str | None = None) -> torch.Tensor:
    """Normalised clips to compare an export on: a video's test views, or two random clips."""
    c = predictor.protocol
    if video is not None:
        views = predictor.clip_views(video)
    else:
        t, s = c.num_frames, c.crop_size
        g = torch.Generator().manual_seed(0)
        views = torch.randint(0, 256, (2, t, 3, s, s), generator=g, dtype=torch.uint8)
    return c.normalize(views)


def check_onnx(path: str | Path, predictor: Predictor, video: str | None = None) -> float:
    """Max |logit difference| between onnxruntime and PyTorch on a video's test views (or a random clip)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ConfigError("check=true needs onnxruntime: pip install 'tanet-lightning[export]' "
                          "(or check=false)") from e
    x = example_clips(predictor, video)
    with torch.no_grad():
        want = predictor.model.float().cpu().eval()(x).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"video": x.numpy()})[0]
    return float(abs(got - want).max())


def card_info(ckpt: Checkpoint) -> dict:
    """What a model card can say besides the checkpoint's own record: its training run (command, test
    results, dataset) or, for a converted release, the publisher's reported numbers (analysis/zoo.py)."""
    info = outputs.run_info(ckpt.path, ckpt.raw.get("callbacks"))
    converted = ckpt.info.get("training", {}).get("converted_from") or {}
    release = release_of_file(converted.get("file", ""))
    if release is not None and "results" not in ckpt.info:
        info["results"] = {"top1": release.top1, "top5": release.top5, "views": release.views,
                           "source": f"reported by {release.publisher} ({release.reported_at}) for "
                                     f"{release.file}; not measured here (python -m tanet_lightning.zoo eval "
                                     f"{release.name} ckpt=FILE measures it)"}
    return info


def export_hf(ckpt: Checkpoint, predictor: Predictor, out: Path, check: bool, video: str | None,
              tolerance: float) -> float | None:
    """The save_pretrained folder; with ``check`` the largest logit difference after from_pretrained."""
    predictor.save_pretrained(out, card_info(ckpt))
    c = predictor.protocol
    print(f"wrote {out}: model.safetensors, config.json, README.md (model card); T={c.num_frames}, "
          f"{predictor.model.num_classes} classes, test views {c.test_views}")
    if not check:
        return None
    back = Predictor.from_pretrained(out)
    x = example_clips(predictor, video)
    with torch.no_grad():
        diff = float((back.model.float().cpu()(x) - predictor.model.float().cpu().eval()(x)).abs().max())
    print(f"from_pretrained({out}) vs the checkpoint on {video or 'a random clip'}: max |logit difference| = "
          f"{diff:.2e}")
    if diff > tolerance:
        raise SystemExit(f"the folder's model differs from the checkpoint's by {diff:.2e} > tolerance={tolerance}")
    return diff


def export(cfg: DictConfig) -> tuple[Path, float | None]:
    schema.validate(cfg, "export")
    if cfg.get("repo_id") and cfg.format != "hf":
        raise ConfigError(f"repo_id={cfg.repo_id} uploads a save_pretrained folder: give format=hf")
    ckpt = Checkpoint.read(cfg.ckpt_path)
    predictor = Predictor.from_checkpoint(ckpt)
    if cfg.format == "hf":
        out = Path(cfg.out or Path(cfg.paths.output_dir) / "hf")
        diff = export_hf(ckpt, predictor, out, bool(cfg.check), cfg.get("video"), float(cfg.tolerance))
        if cfg.get("repo_id"):
            print(f"uploaded to the Hub: {push_to_hub(out, cfg.repo_id)}")
        return out, diff
    out = export_onnx(predictor, cfg.out or Path(cfg.paths.output_dir) / "model.onnx", int(cfg.opset))
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
