"""LightningDataModule over every supported annotation format, configured from conf/data/*.yaml.

Batches leave the workers as uint8 (B, T, 3, H, W) and are normalised on the device in
`on_after_batch_transfer`. Datasets are map-style, so under DDP Lightning injects a
DistributedSampler (and calls set_epoch) by itself; the test split has one item per view.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from . import datasets as ds
from .protocol import TestProtocol
from .sampling import ClipSampler
from .synthetic import CLASS_NAMES as SYNTHETIC_CLASSES
from .synthetic import FLIP_LABEL_MAP as SYNTHETIC_FLIP_MAP
from .synthetic import SyntheticSpec, ensure_synthetic
from .transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_on_device, parse_views

FORMATS = ("synthetic", "video_list", "rawframes", "kinetics_csv", "sthv1_csv", "sthv2_json", "video_folder")
SPLIT_KEYS = {"train": "train_ann", "val": "val_ann", "test": "test_ann"}


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
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if not 0 < done < trainer.num_training_batches:  # epoch boundary: nothing to replay
            return {}
        return {"rng": self._epoch_rng, "batches": done}

    def load_state_dict(self, state: dict) -> None:
        self._pending = state or None


class VideoDataModule(L.LightningDataModule):
    """Video clips for train/val/test.

    Args (Hydra keys under `data.`):
        data_dir: base directory; `root`/annotation defaults in the yaml files hang off it.
        format: one of FORMATS (see datasets.py for each file layout).
        root: directory the annotation's video paths are relative to (synthetic: where it is generated).
        train_ann, val_ann, test_ann: annotation files (test defaults to val: the Sth-Sth/K400 test
            labels are not public).
        classes: class-name file (video_list/rawframes: one per line; sthv1: labels CSV; sthv2: labels JSON).
        num_frames: clip length T. sampler: "dense" | "uniform". dense_window: span of a dense clip.
        short_side: decoder resize of the shorter side (None = native). crop_size: train/val crop.
        test_crop_size: test crop (K400/Sth-V2 use 256 = full short side). test_views: "clips x crops".
        scales, max_distort: multi-scale crop. flip, flip_label_map: horizontal flip and label swaps.
        frame_template, start_index: frame-folder file names (Sth-V1: "{:05d}.jpg", 1).
        path_template: Kinetics CSV row -> relative video path.
        max_bad_fraction: unreadable videos tolerated per split before the run stops.
        batch_size: per device. test_batch_size: defaults to batch_size.
        num_workers, pin_memory (None = on with CUDA), persistent_workers, prefetch_factor (None =
            PyTorch's 2): DataLoader settings; the last two only apply with num_workers > 0.
        synthetic: SyntheticSpec fields for format=synthetic.
        val_fraction, split_seed: video_folder without train/val/test folders: the seeded per-class split.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        format: str = "synthetic",
        root: str | None = None,
        train_ann: str | None = None,
        val_ann: str | None = None,
        test_ann: str | None = None,
        classes: str | None = None,
        num_frames: int = 8,
        sampler: str = "uniform",
        dense_window: int = 64,
        short_side: int | None = 256,
        crop_size: int = 224,
        test_crop_size: int | None = None,
        test_views: str = "1x1",
        scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66),
        max_distort: int = 1,
        flip: bool = True,
        flip_label_map: dict[int, int] | None = None,
        frame_template: str = "{:05d}.jpg",
        start_index: int = 1,
        path_template: str = "{split}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
        max_bad_fraction: float = 0.01,
        batch_size: int = 8,
        test_batch_size: int | None = None,
        num_workers: int = 2,
        persistent_workers: bool = False,
        pin_memory: bool | None = None,
        prefetch_factor: int | None = None,
        synthetic: dict | None = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
    ):
        super().__init__()
        if format not in FORMATS:
            raise ValueError(f"data.format must be one of {FORMATS}, got {format!r}")
        self.data_dir, self.format = Path(data_dir), format
        self.root = Path(root) if root is not None else self.data_dir / format
        self.ann = {"train": train_ann, "val": val_ann, "test": test_ann or val_ann}
        self.sampler = ClipSampler(sampler, int(num_frames), dense_window)
        self.num_frames = int(num_frames)
        self.test_clips, self.test_crops = parse_views(test_views)
        self.synthetic_spec = SyntheticSpec(**(synthetic or {}))
        self.batch_size, self.num_workers = batch_size, num_workers
        # persistent workers keep their RNG streams across epochs, which a resumed run cannot restore:
        # off by default so that resume is bit-identical (workers restart each epoch, seeded anew)
        self.persistent_workers = persistent_workers and num_workers > 0
        self.test_batch_size = test_batch_size or batch_size
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        if prefetch_factor is not None and (not isinstance(prefetch_factor, int) or prefetch_factor < 1):
            raise ValueError(f"data.prefetch_factor must be a positive integer or null, got {prefetch_factor!r}")
        self.prefetch_factor = prefetch_factor
        self.transform_args = dict(
            short_side=short_side,
            crop_size=crop_size,
            scales=tuple(scales),
            max_distort=max_distort,
            flip=flip,
            frame_template=frame_template,
            start_index=start_index,
        )
        self.test_crop_size = test_crop_size or crop_size
        self.path_template, self.max_bad_fraction = path_template, max_bad_fraction
        # set by train() to the run directory (bad_files.<split>.tsv there); a temporary file otherwise
        self.bad_log_base = Path(tempfile.gettempdir()) / f"tanet_bad_files_{uuid.uuid4().hex[:12]}"
        self.val_fraction, self.split_seed = val_fraction, split_seed

        if format == "video_folder":  # class names = sorted folder names; no annotation files
            self.class_names = ds.video_folder_classes(self.root, "data.root")
            label_map = flip_label_map or {}
        elif format == "synthetic":
            self.ann = {s: str(self.root / f"{s}.txt") for s in SPLIT_KEYS}
            self.class_names = list(SYNTHETIC_CLASSES)
            label_map = SYNTHETIC_FLIP_MAP if flip_label_map is None else flip_label_map
        else:
            for split in ("train", "val"):  # fail at instantiation, before any training starts
                if self.ann[split] is None:
                    raise ds.DatasetNotFoundError(f"data.{SPLIT_KEYS[split]} is not set (format={format})")
            for split, ann in self.ann.items():
                ds._need_file(
                    ann, f"data.{SPLIT_KEYS[split]}" if split != "test" or test_ann else "data.val_ann"
                )
            self.class_names = self._read_class_names(classes)
            label_map = flip_label_map or {}
        label_map = {int(k): int(v) for k, v in label_map.items()}
        outside = sorted({c for kv in label_map.items() for c in kv if not 0 <= c < len(self.class_names)})
        if outside:
            raise ValueError(f"data.flip_label_map names classes {outside} outside 0..{len(self.class_names) - 1}")
        self.flip_label_map = {**label_map, **{v: k for k, v in label_map.items()}}
        self.num_classes = len(self.class_names)
        self.datasets: dict[str, ds.VideoClipDataset] = {}

    # ------------------------------------------------------------------------------------------------

    def _read_class_names(self, classes: str | None) -> list[str]:
        if self.format == "kinetics_csv":
            return ds.kinetics_class_names(self.ann["train"], "data.train_ann")
        if self.format == "sthv2_json":
            return ds.sthv2_class_names(self._need_classes(classes), "data.classes")
        if self.format == "sthv1_csv":
            return ds.read_class_names(self._need_classes(classes), "data.classes")
        if classes is not None:
            return ds.read_class_names(classes, "data.classes")
        # plain lists without a class file: classes 0..max label of the train list
        records = self._read_records("train")
        return [str(i) for i in range(max(r.label for r in records) + 1)]

    def _need_classes(self, classes: str | None) -> str:
        if classes is None:
            raise ds.AnnotationError(f"data.classes is not set; format={self.format} needs its labels file")
        return classes

    def _read_records(self, split: str) -> list[ds.VideoRecord]:
        ann, key = self.ann[split], f"data.{SPLIT_KEYS[split]}"
        if self.format == "video_folder":
            return ds.read_video_folder(self.root, split, self.class_names, self.val_fraction, self.split_seed)
        if self.format in ("synthetic", "video_list"):
            return ds.read_video_list(ann, self.root, key)
        if self.format == "rawframes":
            return ds.read_rawframe_list(ann, self.root, key)
        if self.format == "kinetics_csv":
            return ds.read_kinetics_csv(ann, self.root, self.class_names, self.path_template, key)
        if self.format == "sthv2_json":
            return ds.read_sthv2_json(ann, self.root, self.class_names, key)
        return ds.read_sthv1_csv(ann, self.root, self.class_names, key)

    def _check_labels(self, records: list[ds.VideoRecord], split: str) -> None:
        bad = [r for r in records if not 0 <= r.label < self.num_classes]
        if bad:
            raise ds.AnnotationError(
                f"{self.ann[split] or self.root}: {len(bad)} labels outside 0..{self.num_classes - 1}, "
                f"e.g. {bad[0].path} -> {bad[0].label}; check data.classes / data.{SPLIT_KEYS[split]}"
            )

    def _dataset(self, split: str) -> ds.VideoClipDataset:
        records = self._read_records(split)
        self._check_labels(records, split)
        bad = ds.BadFileLog(f"{self.bad_log_base}.{split}.tsv", self.max_bad_fraction, len(records))
        args = dict(self.transform_args)
        if split == "test":
            args.update(crop_size=self.test_crop_size, test_clips=self.test_clips, test_crops=self.test_crops)
        return ds.VideoClipDataset(
            records, self.sampler, split, bad, flip_label_map=self.flip_label_map, **args
        )

    # ------------------------------------------------------------------------------------------------
    # Lightning hooks

    def prepare_data(self) -> None:
        # runs once per node (local rank 0); other ranks wait at the barrier before setup()
        if self.format == "synthetic":
            ensure_synthetic(self.root, self.synthetic_spec)

    def setup(self, stage: str | None = None) -> None:
        if self.format == "synthetic":
            ensure_synthetic(
                self.root, self.synthetic_spec
            )  # no-op when prepared; covers use without a Trainer
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage, ("train", "val", "test")):
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        workers = dict(persistent_workers=self.persistent_workers, prefetch_factor=self.prefetch_factor) \
            if self.num_workers > 0 else {}  # DataLoader rejects both without worker processes
        kind, extra = (ResumableLoader, {"datamodule": self}) if split == "train" else (DataLoader, {})
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
            batch["video"] = normalize_on_device(batch["video"])
        return batch

    # ------------------------------------------------------------------------------------------------

    def check_annotations(self) -> None:
        """Read and validate every split's annotation file now, before any training step."""
        self.prepare_data()
        self.setup()

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

    def test_views_per_video(self) -> int:
        return self.test_clips * self.test_crops

    def test_protocol(self) -> TestProtocol:
        """The test split's protocol, saved in checkpoints so predict turns a video into clips the same way."""
        return TestProtocol(
            num_frames=self.num_frames, sampler=self.sampler.kind, dense_window=self.sampler.window,
            short_side=self.transform_args["short_side"], crop_size=self.test_crop_size,
            test_views=f"{self.test_clips}x{self.test_crops}", frame_template=self.transform_args["frame_template"],
            start_index=self.transform_args["start_index"], mean=IMAGENET_MEAN, std=IMAGENET_STD,
        )
