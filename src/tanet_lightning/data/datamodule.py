"""LightningDataModule over every supported annotation format, configured from conf/data/*.yaml.

Batches leave the workers as uint8 (B, T, 3, H, W) and are normalised on the device in
`on_after_batch_transfer`. Datasets are map-style, so under DDP Lightning injects a
DistributedSampler (and calls set_epoch) by itself; the test split has one item per view.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from pydantic import Field
from torch.utils.data import DataLoader

from ..base.errors import ConfigError, DataError
from ..base.typed import Count, Fix, Nested, Seed, validated
from . import shards
from .datasets import BadFileLog, VideoClipDataset
from .decoders import FrameReader
from .fingerprint import SplitFingerprint, fingerprint_split
from .formats import FORMATS, SPLITS, AnnotationError, Source, VideoRecord
from .index import VideoIndex
from .probe import FORMAT_CONFIGS, prepare_command, probe_spacing, spacing_message
from .protocol import TestProtocol
from .settings import ClipSettings
from .synthetic import SyntheticSpec
from .workers import leave_sigterm_to_the_parent

log = logging.getLogger(__name__)

class ResumableLoader(DataLoader):
    """The training loader, resumable mid-epoch (SLURM requeue / preemption checkpoints) with the same
    batches and augmentations as an uninterrupted run.

    Clip order and augmentation come from torch's RNG at the moment an epoch's iterator is created (the
    sampler's seed, the workers' base seed; with no workers, every item's draw). A mid-epoch checkpoint
    stores that state and the number of batches trained; on resume the iterator is re-created from it
    and those batches are loaded again and dropped (decoding only, no compute). Exact when the model
    itself draws no random numbers (dropout 0, as in the CPU preset); with dropout the resumed run
    continues with other dropout masks.
    """

    def __init__(self, *args, datamodule: L.LightningDataModule | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.datamodule, self._epoch_rng, self._pending = datamodule, None, None

    def __iter__(self):
        pending, self._pending = self._pending, None
        if pending:
            torch.set_rng_state(pending["rng"])
        self._epoch_rng = torch.get_rng_state()
        it = super().__iter__()
        for _ in range(pending["batches"] if pending else 0):
            next(it)
        return it

    def state_dict(self) -> dict:
        trainer = getattr(self.datamodule, "trainer", None)
        if trainer is None or self._epoch_rng is None:
            return {}
        # the batches trained: `completed` lags by one in a checkpoint saved at a batch's end (a stop signal's)
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if not 0 < done < trainer.num_training_batches:  # epoch boundary: nothing to replay
            return {}
        return {"rng": self._epoch_rng, "batches": done}

    def load_state_dict(self, state: dict) -> None:
        self._pending = state or None


CacheDir = Annotated[str | None, Fix(give="DIR", why="where a remote shard location's chunks are cached")]
CacheSize = Annotated[str | None, Fix(give="100GB", why="the shard cache's size limit")]


class VideoDataModule(L.LightningDataModule):
    """Video clips for train/val/test.

    Args (Hydra keys under `data.`):
        data_dir: base directory; `root`/annotation defaults in the yaml files hang off it.
        format: one of FORMATS (formats.py: one reader per format).
        root: directory the annotation's video paths are relative to (video_folder: the class folders;
            synthetic: where its variants are generated, one directory per data.synthetic settings).
        train_ann, val_ann, test_ann: annotation files (test defaults to val: the Sth-Sth/K400 test
            labels are not public).
        classes: class-name file (video_list/rawframes: one per line; sthv1: labels CSV; sthv2: labels JSON).
        path_template: Kinetics CSV row -> relative video path.
        val_fraction, split_seed: video_folder without train/val/test folders: the seeded per-class split.
        synthetic: SyntheticSpec fields for format=synthetic.
        flip_label_map: label swaps of a horizontal flip (null = the format's own: synthetic's pairs).
        max_bad_fraction: unreadable videos tolerated per split before the run stops.
        batch_size: per device. test_batch_size: defaults to batch_size.
        num_workers, pin_memory (None = on with CUDA), persistent_workers, prefetch_factor (None =
            PyTorch's 2): DataLoader settings; the last two only apply with num_workers > 0.
        **clip: the ClipSettings keys (settings.py, defaults there): num_frames, sampler, dense_window,
            short_side, crop_size, test_crop_size, test_views, scales, max_distort, flip,
            frame_template, start_index.
    """

    @validated("data.", ClipSettings)  # every argument's type and range, from this signature and ClipSettings
    def __init__(
        self,
        data_dir: str | os.PathLike,
        format: Literal[tuple(FORMATS)] = "synthetic",
        root: Annotated[str | None, Fix(give="DIR")] = None,
        train_ann: Annotated[str | None, Fix(give="FILE")] = None,
        val_ann: Annotated[str | None, Fix(give="FILE")] = None,
        test_ann: Annotated[str | None, Fix(give="FILE")] = None,
        classes: Annotated[str | None, Fix(give="FILE")] = None,
        path_template: str | None = None,
        val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.2,
        split_seed: Seed = 0,
        synthetic: Annotated[Mapping | None, Nested(SyntheticSpec)] = None,
        flip_label_map: dict[int, int] | None = None,
        max_bad_fraction: Annotated[float, Field(ge=0, le=1)] = 0.01,
        batch_size: Count = 8,
        test_batch_size: Count | None = None,
        num_workers: Annotated[int, Field(ge=0)] = 2,
        persistent_workers: bool = False,
        pin_memory: bool | None = None,
        prefetch_factor: Count | None = None,
        decoder: Literal["pyav", "torchcodec"] = "pyav",
        decode_device: Literal["cpu", "cuda"] = "cpu",
        cache_dir: CacheDir = None,
        cache_size: CacheSize = None,
        **clip,
    ):
        super().__init__()
        self.settings = ClipSettings(**clip)
        self.frames = FrameReader(decoder, decode_device)  # decoders.py: the library and device that decode
        if decode_device == "cuda" and num_workers > 0:
            raise ConfigError(f"data.decode_device=cuda decodes in the main process (CUDA cannot run in forked "
                              f"DataLoader workers; NVDEC is the parallelism): set data.num_workers=0, not "
                              f"{num_workers}")
        self.protocol = TestProtocol.from_settings(self.settings)  # the test split reads through it
        self.data_dir, self.format, self.reader = Path(data_dir), format, FORMATS[format]
        # a shard location (prepare ... shards=true) is recognised by its manifest; its splits and classes
        # come from there, whatever the format's annotation keys say
        found = shards.manifest(str(root)) if root is not None else None
        self.shards = shards.open_splits(str(root), found, cache_dir, cache_size) if found else {}
        if found:
            self.reader = shards.ShardFormat(str(root), found)
        self.source = self.reader.locate(Source(
            format, Path(root) if root is not None else self.data_dir / format,
            ann={"train": train_ann, "val": val_ann, "test": test_ann or val_ann},
            ann_keys={"train": "data.train_ann", "val": "data.val_ann",
                      "test": "data.test_ann" if test_ann else "data.val_ann"},
            classes=classes, path_template=path_template, val_fraction=val_fraction, split_seed=split_seed,
            synthetic=SyntheticSpec(**(synthetic or {})),
        ))
        self.root = str(root).rstrip("/") if found else self.source.root  # a URL stays a URL
        self.batch_size, self.num_workers = batch_size, num_workers
        self.test_batch_size = test_batch_size or batch_size
        # persistent workers keep their RNG streams across epochs, which a resumed run cannot restore:
        # off by default so that resume is bit-identical (workers restart each epoch, seeded anew)
        self.persistent_workers = persistent_workers and num_workers > 0
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.pin_memory = self.pin_memory and decode_device == "cpu"  # frames decoded on the GPU stay there
        self.prefetch_factor, self.max_bad_fraction = prefetch_factor, max_bad_fraction
        # set by train() to the run directory (bad_files.<split>.tsv there); a temporary file otherwise
        self.bad_log_base = Path(tempfile.gettempdir()) / f"tanet_bad_files_{uuid.uuid4().hex[:12]}"
        # set by the applications to the launch's `data=NAME data.*=...` (None: composed from this module)
        self.prepare_args: list[str] | None = None
        self._probed = False

        if self.reader.annotated:  # fail at instantiation, before any training starts
            for split in SPLITS:
                self.source.ann_file(split)
        self.class_names = self.reader.class_names(self.source)
        label_map = self.reader.flip_map(self.source) if flip_label_map is None else flip_label_map
        label_map = {int(k): int(v) for k, v in label_map.items()}
        outside = sorted({c for kv in label_map.items() for c in kv if not 0 <= c < len(self.class_names)})
        if outside:
            raise ConfigError(f"data.flip_label_map names classes {outside} outside 0..{len(self.class_names) - 1}")
        self.flip_label_map = {**label_map, **{v: k for k, v in label_map.items()}}
        self.num_classes = len(self.class_names)
        self.datasets: dict[str, VideoClipDataset] = {}
        self._fingerprints: dict[str, SplitFingerprint] = {}  # taken when a split's list is read
        self._loaded: set[str] = set()  # splits this process made a loader for (their unreadable count is known)
        self.video_index: VideoIndex | None = None  # <root>/video_index.npz of a prepared dataset, read at setup

    # ------------------------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return self.settings.num_frames

    def _where(self, split: str) -> str:
        """The file or folder a split comes from, and its key, for messages."""
        if self.reader.annotated:
            return f"{self.source.ann[split]} ({self.source.ann_keys[split]})"
        return f"{self.root} (data.root)"

    def _read_records(self, split: str) -> list[VideoRecord]:
        records = self.reader.records(self.source, split, self.class_names)
        bad = [r for r in records if not 0 <= r.label < self.num_classes]
        if bad:
            raise AnnotationError(
                f"{self._where(split)}: {len(bad)} labels outside 0..{self.num_classes - 1}, "
                f"e.g. {bad[0].path} -> {bad[0].label}; check data.classes and the labels of this split"
            )
        if not records:
            hint = (" every class has at most one video, so none goes to val: add videos, or give "
                    "<root>/train and <root>/val folders" if self.format == "video_folder" and split != "train"
                    else " add videos to it, or point the key at the right file")
            raise DataError(f"the {split} split is empty: {self._where(split)} lists no videos;{hint}")
        return records

    def _dataset(self, split: str) -> VideoClipDataset:
        records = self._read_records(split)
        bad = BadFileLog(f"{self.bad_log_base}.{split}.tsv", self.max_bad_fraction, len(records))
        self._fingerprints[split] = fingerprint_split(records, self.root, self.class_names, self.flip_label_map,
                                                      present=[True] * len(records) if self.shards else None)
        if self.video_index is None and not self.shards:  # a prepared dataset's sidecar (prepare's)
            self.video_index = VideoIndex.load(self.root)
        return VideoClipDataset(records, split, bad, self.settings, self.protocol, self.flip_label_map,
                                index=self.video_index, store=self.shards.get(split), frames=self.frames)

    def _check_training_batches(self, world_size: int) -> None:
        """Zero training steps (fewer videos than one batch on every device, drop_last) is refused, not run."""
        n = len(self.datasets["train"].records)
        per_device = math.ceil(n / world_size)  # DistributedSampler pads each rank to the same count
        if per_device // self.batch_size == 0:
            raise DataError(
                f"the training split has {n} videos, fewer than one batch per device: data.batch_size="
                f"{self.batch_size} x trainer.devices (world size {world_size}) gives zero training steps "
                f"(the last incomplete batch is dropped). Set data.batch_size<={per_device}, use fewer "
                f"devices, or add videos to {self._where('train')}"
            )

    # ------------------------------------------------------------------------------------------------
    # Lightning hooks

    def prepare_data(self) -> None:
        # runs once per node (local rank 0); other ranks wait at the barrier before setup()
        self.reader.prepare(self.source)

    def setup(self, stage: str | None = None, world_size: int | None = None) -> None:
        self.reader.prepare(self.source)  # no-op when prepared; covers use without a Trainer
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage, SPLITS):
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split)
        if "train" in splits.get(stage, SPLITS):
            trainer = getattr(self, "trainer", None)
            self._check_training_batches(world_size or (trainer.world_size if trainer is not None else 1))
            if not self._probed:
                self._probed = True
                self._probe_keyframes()

    @rank_zero_only
    def _probe_keyframes(self) -> None:
        """Log the training videos' keyframe spacing; when long, the `prepare` command (probe.py)."""
        if self.shards:  # shards are written from a prepared copy: short keyframe spacing by construction
            return
        probe = probe_spacing([r.path for r in self.datasets["train"].records])
        if probe is not None:
            (log.warning if probe.long else log.info)(spacing_message(probe, self.prepare_command()))

    def prepare_command(self) -> str:
        """The ``python -m tanet_lightning.prepare ...`` command that writes a fast-loading copy of this
        dataset (a keyframe every 30 frames, an index sidecar)."""
        args = self.prepare_args
        if args is None:  # not launched by an application: the files this module reads, spelled out
            args = [f"data={FORMAT_CONFIGS.get(self.format, self.format)}"]
            keys = {self.source.ann_keys[s]: self.source.ann[s] for s in SPLITS if self.source.ann.get(s)}
            keys.update({"data.classes": self.source.classes, "data.path_template": self.source.path_template})
            args += [f"{k}={v}" for k, v in keys.items() if v is not None]
        return prepare_command(args, str(self.root))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        workers = dict(persistent_workers=self.persistent_workers, prefetch_factor=self.prefetch_factor,
                       worker_init_fn=leave_sigterm_to_the_parent) \
            if self.num_workers > 0 else {}  # DataLoader rejects the first two without worker processes
        kind, extra = (ResumableLoader, {"datamodule": self}) if split == "train" else (DataLoader, {})
        self._loaded.add(split)
        return kind(
            self.datasets[split],
            batch_size=self.test_batch_size if split == "test" else self.batch_size,
            shuffle=shuffle,
            drop_last=split == "train",  # fixed batch shapes (torch.compile, BN on tiny last batches)
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            **workers,
            **extra,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if batch["video"].dtype == torch.uint8:
            batch["video"] = self.protocol.normalize(batch["video"])
        return batch

    # ------------------------------------------------------------------------------------------------

    def check_annotations(self, world_size: int = 1) -> None:
        """Read and validate every split now, before any training step; `world_size` (the trainer's)
        checks that every device gets at least one training batch."""
        self.prepare_data()
        self.setup(world_size=world_size)

    def bad_file_rows(self) -> list[tuple[str, str, str]]:
        """(split, path, reason) of every unreadable file seen so far, by any worker of this process."""
        rows = []
        for split, d in sorted(self.datasets.items()):
            if os.path.exists(d.bad_files.path):
                with open(d.bad_files.path) as f:
                    rows += [(split, *ln.rstrip("\n").split("\t", 1)) for ln in f if ln.strip()]
        return rows

    def bad_files(self) -> list[str]:
        """Unreadable files seen so far by any worker of this process (all splits)."""
        return sorted({p for d in self.datasets.values() for p in d.bad_files.paths()})

    def video_names(self, split: str) -> list[str]:
        """The video paths of a split, indexed by the `video_idx` its items carry."""
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        return [r.path for r in self.datasets[split].records]

    def fingerprint(self, split: str, read: bool = False) -> SplitFingerprint:
        """The split's fingerprint (data/fingerprint.py: videos annotated, found, unreadable, hashes of the
        videos, classes and flip map). ``unreadable`` counts the videos met so far once this process made the
        split's loader, or when ``read`` (the caller knows it was read elsewhere: ddp_spawn's workers)."""
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        fp = self._fingerprints[split]
        if read or split in self._loaded:
            fp = replace(fp, unreadable=len(self.datasets[split].bad_files.paths()))
        return fp

    def fingerprints(self, read: Iterable[str] = ()) -> dict[str, SplitFingerprint]:
        """{split: fingerprint} of the splits read so far (``read``: as in ``fingerprint``)."""
        read = set(read)
        return {s: self.fingerprint(s, read=s in read) for s in SPLITS if s in self.datasets}

    def test_views_per_video(self) -> int:
        return self.protocol.views.clips * self.protocol.views.crops

    def test_protocol(self) -> TestProtocol:
        """The test split's protocol (the object that reads its views), saved in checkpoints so predict
        turns a video into clips the same way."""
        return self.protocol
