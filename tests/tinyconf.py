"""Tiny configs shared by the tests (a module, not the conftest: tests/data has a conftest of its own,
so ``import conftest`` would be ambiguous)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from tanet_lightning.config import config_dir
from tanet_lightning.data.synthetic import SyntheticSpec, ensure_synthetic, synthetic_dir

# 8 classes x (3 train, 1 val, 1 test) 32x32 videos of 8-10 frames: enough for every code path.
TINY_SYNTHETIC = [
    "data.synthetic.train_per_class=3", "data.synthetic.val_per_class=1", "data.synthetic.test_per_class=1",
    "data.synthetic.size=32", "data.synthetic.min_frames=8", "data.synthetic.max_frames=10",
    "data.short_side=32", "data.crop_size=32", "data.test_crop_size=32", "data.num_workers=0",
    "data.batch_size=8", "data.num_frames=4",
]
# the same set as a spec: where its videos live under a data directory (one folder per variant)
TINY_SPEC = SyntheticSpec(train_per_class=3, val_per_class=1, test_per_class=1, size=32, min_frames=8, max_frames=10)


def tiny_synthetic_dir(data_dir: str | Path) -> Path:
    """The tiny set's folder under ``data_dir`` (what ``data_dir=...`` + TINY_SYNTHETIC reads), generated if needed."""
    root = synthetic_dir(Path(data_dir) / "synthetic", TINY_SPEC)
    ensure_synthetic(root, TINY_SPEC)
    return root


TINY_RUN = [
    "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
    "callbacks.model_summary=null",
]



def compose_config(name: str, overrides: list[str]) -> DictConfig:
    """Compose like `python -m tanet_lightning.<name>` from the current directory: the run directory is
    the one Hydra would make (``hydra.run.dir``, named after the overrides), set here as Hydra's runtime
    would set it, so `paths.output_dir` and the run-name resolvers see what a real launch sees."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(cfg.hydra.run.dir).resolve())
        del cfg.hydra
    return cfg


def write_gop_video(path, gop: int, frames: int = 100, size: int = 32) -> str:
    """A noise video with a keyframe every `gop` frames (H.264)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"preset": "ultrafast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for _ in range(frames):
            out.mux(s.encode(av.VideoFrame.from_ndarray(rng.integers(0, 256, (size, size, 3), np.uint8), "rgb24")))
        out.mux(s.encode(None))
    return str(path)


def video_set(root, gop: int, videos: int = 4, repeat: int = 1, frames: int = 100):
    """A video_list dataset of 32x32 noise (train = the videos `repeat` times, val = the first two): the
    DataModule keys that read it."""
    root.mkdir(parents=True, exist_ok=True)
    names = [f"v{i}.mp4" for i in range(videos)]
    for name in names:
        write_gop_video(root / name, gop, frames)
    (root / "train.txt").write_text("".join(f"{n} {i % 2}\n" for n in names * repeat for i in [names.index(n)]))
    (root / "val.txt").write_text(f"{names[0]} 0\n{names[1]} 1\n")
    return dict(format="video_list", root=str(root), train_ann=str(root / "train.txt"),
                val_ann=str(root / "val.txt"), num_frames=4, short_side=32, crop_size=32, batch_size=2,
                num_workers=0)
