"""A prepared dataset as shards of LitData (Lightning's streaming engine), on a local disk or an object store.

``python -m tanet_lightning.prepare ... shards=true out=DIR`` writes, per split, one LitData dataset
(``DIR/<split>/``: ``index.json`` + ``chunk-*.bin``) whose sample ``i`` is the ``i``-th video of the split:
its re-encoded bytes, its frame index (pts, keyframes: what ``video_index.npz`` holds for a file), label,
video id (the path relative to ``data.root``, as in the split fingerprints) and split. Beside them
``shards.json`` (the engine, the splits, the class list, the flip map, every split's video ids, labels and
frame counts) and ``fingerprint.json`` (the split fingerprints, equal to those of the prepared files).

Reading: ``data.root=DIR`` or ``data.root=s3://bucket/prefix`` (anything LitData reads) is recognised by its
``shards.json``. The clip dataset stays map-style: sample ``i`` is read by LitData's random access, so the
project's samplers, seeded shuffle, DDP split, mid-epoch resume and exact-once evaluation are the same code as
for files, and a streamed clip equals the file's clip bit for bit. On a remote store random access is two
ranged reads per sample (its offset, its bytes), every epoch: LitData fills ``data.cache_dir`` with whole
chunks only when it iterates them in order, so the cache holds the splits' ``index.json``, no videos.
Credentials come from the environment (``AWS_*``, ``AWS_ENDPOINT_URL``) or the engine's usual files, never
from the config; a failed request is retried as ``retries()`` says, then the run fails naming the URL.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ..base.errors import DataError
from ..base.files import atomic_dir, atomic_write_json
from .fingerprint import video_ids
from .formats import Reader, Source, VideoRecord
from .index import INDEX_NAME as INDEX
from .index import IndexEntry
from .io import EncodedVideo

log = logging.getLogger(__name__)

MANIFEST = "shards.json"
FINGERPRINTS = "fingerprint.json"
ENGINE = "litdata"
VERSION = 1
DEFAULT_CHUNK_BYTES = "128MB"  # inside LitData's recommended 64-256 MB
STAGING = ".files"  # prepare ... shards=true: the prepared files, packed into shards and then removed
# attempts per request to an object store, in boto3's standard retry mode (exponential backoff with jitter:
# a stopped store, connections refused, is reported within seconds; measured 0.9 s). LitData's own client makes
# up to 1000 in adaptive mode, which against a stopped store ran 277 s (measured) before the error came.
ATTEMPTS = 5


class ShardError(DataError):
    """A shard location that cannot be read (missing manifest, unreachable store, a sample that is not ours).
    Raised in a loader worker, its message reaches the user whole (``base/errors.UserError``)."""


def is_remote(root: str) -> bool:
    return bool(urlparse(str(root)).scheme) and not os.path.exists(str(root))


def retries() -> dict:
    """boto3's retry settings for the store, the AWS SDK's usual variables first (``AWS_MAX_ATTEMPTS``,
    ``AWS_RETRY_MODE``), else ATTEMPTS in standard mode."""
    return {"max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or ATTEMPTS),
            "mode": os.environ.get("AWS_RETRY_MODE") or "standard"}


def _retry_note() -> str:
    r = retries()
    return f"after {r['max_attempts']} attempts ({r['mode']} retries; AWS_MAX_ATTEMPTS sets how many)"


def _config():
    import botocore.config

    return botocore.config.Config(retries=retries())


def _s3():
    import boto3  # LitData's own S3 dependency; reads AWS_* and AWS_ENDPOINT_URL from the environment

    return boto3.client("s3", config=_config())


def read_text(root: str, name: str) -> str | None:
    """``root/name`` from a local folder or an ``s3://`` prefix; None if it does not exist."""
    if not is_remote(root):
        path = Path(root) / name
        return path.read_text() if path.is_file() else None
    url = urlparse(root)
    if url.scheme != "s3":
        raise ShardError(f"data.root={root}: only local folders and s3:// URLs hold shards here")
    key = f"{url.path.strip('/')}/{name}".lstrip("/")
    client = _s3()
    try:
        return client.get_object(Bucket=url.netloc, Key=key)["Body"].read().decode()
    except client.exceptions.NoSuchKey:
        return None
    except Exception as e:  # connection refused, bad credentials, no bucket: the user fixes the URL or the env
        raise ShardError(f"cannot read {root}/{name} {_retry_note()}: {type(e).__name__}: {e}. Check the URL, "
                         f"the store (AWS_ENDPOINT_URL) and the credentials in the environment") from None


def manifest(root: str) -> dict | None:
    """The manifest of a shard location, or None when ``root`` holds none (a folder of files)."""
    if not is_remote(root) and not Path(root).is_dir():
        return None
    text = read_text(root, MANIFEST)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ShardError(f"{root}/{MANIFEST} is not JSON ({e}); write the shards again with prepare") from None
    if not isinstance(data, dict) or data.get("engine") != ENGINE or "splits" not in data:
        raise ShardError(f"{root}/{MANIFEST} is not a tanet-lightning shard manifest (engine {ENGINE})")
    return data


# ----------------------------------------------------------------------------------------------------
# writing


def _sample(video: Path, vid: str, label: int, split: str, entry: IndexEntry) -> dict:
    table = entry.pts_table if entry.pts_table is not None else np.zeros(0, dtype=np.int64)
    return {
        "video": video.read_bytes(), "id": vid, "label": int(label), "split": split,
        "pts_table": np.asarray(table, dtype=np.int64), "key_frames": np.asarray(entry.key_frames, dtype=np.int64),
        "meta": np.array([entry.num_frames, entry.pts_start, entry.pts_step, entry.width, entry.height,
                          entry.fps.numerator, entry.fps.denominator, entry.time_base.numerator,
                          entry.time_base.denominator], dtype=np.int64),
    }


def _entry(sample: dict) -> IndexEntry:
    n, start, step, w, h, fn, fd, tn, td = (int(x) for x in sample["meta"])
    return IndexEntry(num_frames=n, pts_start=start, pts_step=step,
                      pts_table=None if step > 0 else np.asarray(sample["pts_table"], dtype=np.int64),
                      key_frames=np.asarray(sample["key_frames"], dtype=np.int64), width=w, height=h,
                      fps=Fraction(fn, fd), time_base=Fraction(tn, td), size=len(sample["video"]), mtime_ns=-1)


def write_dataset(datamodule, out: Path, chunk_bytes: str | int = DEFAULT_CHUNK_BYTES) -> dict:
    """Every split of ``datamodule`` (set up on a prepared copy: every video indexed) as shards in ``out``,
    with the manifest and the split fingerprints. A test split that is the val split is written once."""
    datamodule.setup()
    index, root = datamodule.video_index, str(datamodule.root)
    if index is None:
        raise ShardError(f"{root} has no {INDEX}: shards are written from a prepared copy")
    rows, aliases, paths = {}, {}, {}
    for split in ("train", "val", "test"):
        records = datamodule.datasets[split].records
        paths[split] = [r.path for r in records]
        ids = video_ids(paths[split], root)
        rows[split] = []
        for rec, vid in zip(records, ids):
            entry = index.lookup(rec.path)
            if entry is None:
                raise ShardError(f"{rec.path} is not in {root}/{INDEX} (or changed since): prepare it again")
            rows[split].append((vid, int(rec.label), entry.num_frames))
        if split == "test" and paths["test"] == paths["val"] and rows["test"] == rows["val"]:
            aliases["test"] = "val"
            continue
        write_split(out, split, [(Path(r.path), vid, r.label, index.lookup(r.path))
                                 for r, (vid, _, _) in zip(records, rows[split])], chunk_bytes)
        log.info("%s: %d videos in %s", split, len(records), out / split)
    fps = {s: datamodule.fingerprint(s).to_dict() for s in ("train", "val", "test")}
    atomic_write_json(out / FINGERPRINTS, fps)
    return write_manifest(out, rows, aliases, datamodule.class_names, datamodule.flip_label_map, chunk_bytes)


def write_split(out: Path, split: str, videos: Sequence[tuple[Path, str, int, IndexEntry]],
                chunk_bytes: str | int = DEFAULT_CHUNK_BYTES) -> None:
    """One split as a LitData dataset ``out/<split>/``, sample ``i`` = ``videos[i]``. Written into a hidden
    folder and renamed into place when whole: an interrupted write leaves no dataset a reader would open."""
    from litdata.streaming.writer import BinaryWriter

    out.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out / split, replace=True) as tmp:
        writer = BinaryWriter(str(tmp), chunk_bytes=chunk_bytes)
        for i, (path, vid, label, entry) in enumerate(videos):
            writer[i] = _sample(path, vid, label, split, entry)
        writer.done()
        writer.merge()


def write_manifest(out: Path, splits: dict[str, list[tuple[str, int, int]]], aliases: dict[str, str],
                   class_names: Sequence[str], flip_label_map: dict[int, int], chunk_bytes) -> dict:
    data = {"engine": ENGINE, "version": VERSION, "chunk_bytes": chunk_bytes, "class_names": list(class_names),
            "flip_label_map": {str(k): int(v) for k, v in flip_label_map.items()},
            "splits": {s: {"shards": aliases.get(s, s), "videos": [list(v) for v in rows]}
                       for s, rows in splits.items()}}
    atomic_write_json(out / MANIFEST, data)
    return data


def upload(local: str | os.PathLike, url: str) -> int:
    """Copy a shard folder to ``s3://bucket/prefix`` (the manifest last, so a reader never sees a manifest
    whose shards are not there yet); returns the number of files."""
    local, target = Path(local), urlparse(url)
    if target.scheme != "s3":
        raise ShardError(f"upload to {url}: only s3:// URLs")
    client, prefix = _s3(), target.path.strip("/")
    files = sorted(p for p in local.rglob("*") if p.is_file() and not any(x.startswith(".") for x in p.parts[-2:]))
    files.sort(key=lambda p: p.name == MANIFEST)
    for p in files:
        client.upload_file(str(p), target.netloc, f"{prefix}/{p.relative_to(local).as_posix()}".lstrip("/"))
    return len(files)


# ----------------------------------------------------------------------------------------------------
# reading


@dataclass
class ShardSplit:
    """Random access to one split's samples through LitData. The engine's dataset is created lazily in each
    process (DataLoader workers fork), and ``fetch(i)`` gives sample ``i``'s bytes and frame index."""

    root: str
    split: str
    shards: str  # the LitData dataset folder under root holding this split (val's for a test split that is val)
    ids: list[str]
    cache_dir: str | None = None
    cache_size: str | None = None

    def __post_init__(self):
        self._dataset, self._pid = None, None

    def _engine(self):
        if self._dataset is None or self._pid != os.getpid():
            from litdata import StreamingDataset

            where = f"{self.root.rstrip('/')}/{self.shards}"
            kwargs = {"max_cache_size": self.cache_size} if self.cache_size else {}
            if is_remote(self.root):  # LitData's S3 client, with our bounded retries instead of its 1000
                kwargs["storage_options"] = {"config": _config()}
            cache = os.path.join(self.cache_dir, self.shards) if self.cache_dir else None
            try:
                self._dataset = StreamingDataset(where, cache_dir=cache, shuffle=False, **kwargs)
            except Exception as e:
                raise ShardError(f"cannot open the {self.split} shards at {where}{self._retried()}: "
                                 f"{type(e).__name__}: {e}") from None
            # no length check: under DDP the engine's len() is this rank's share; every sample's id is checked
            self._pid = os.getpid()
        return self._dataset

    def _retried(self) -> str:
        return f" {_retry_note()}" if is_remote(self.root) else ""

    def fetch(self, i: int) -> tuple[EncodedVideo, IndexEntry]:
        try:
            sample = self._engine()[i]
        except ShardError:
            raise
        except Exception as e:  # the store went away mid-epoch, a chunk vanished: not a bad video, a bad store
            raise ShardError(f"cannot read sample {i} ({self.ids[i]}) of {self.root}/{self.shards}"
                             f"{self._retried()}: {type(e).__name__}: {e}") from None
        if sample["id"] != self.ids[i]:
            raise ShardError(f"{self.root}/{self.shards}: sample {i} is {sample['id']}, its manifest says "
                             f"{self.ids[i]}; write the shards again")
        return EncodedVideo(sample["video"], f"{self.root}/{self.ids[i]}"), _entry(sample)

    def __getstate__(self):  # DataLoader workers get the description, not an open engine
        state = self.__dict__.copy()
        state["_dataset"], state["_pid"] = None, None
        return state


def open_splits(root: str, data: dict, cache_dir: str | None, cache_size: str | None) -> dict[str, ShardSplit]:
    return {s: ShardSplit(root, s, v["shards"], [row[0] for row in v["videos"]], cache_dir, cache_size)
            for s, v in data["splits"].items()}


def split_rows(data: dict, split: str) -> Iterable[tuple[str, int, int]]:
    return [tuple(row) for row in data["splits"][split]["videos"]]


class ShardFormat(Reader):
    """The format reader of a shard location: the splits, labels and classes come from its manifest (the
    annotation files were read when the shards were written), whatever ``data.format`` says."""

    annotated = False

    def __init__(self, root: str, data: dict):
        self.root, self.data = root.rstrip("/"), data

    def flip_map(self, source: Source) -> dict[int, int]:
        return {int(k): int(v) for k, v in self.data["flip_label_map"].items()}

    def class_names(self, source: Source) -> list[str]:
        return list(self.data["class_names"])

    def records(self, source: Source, split: str, class_names: Sequence[str]) -> list[VideoRecord]:
        return [VideoRecord(f"{self.root}/{vid}", int(label), int(n)) for vid, label, n in split_rows(self.data, split)]
