"""The released TANet checkpoints this project converts, and the ledger of what it measures on them.

``RELEASES`` is the one table: every file the official TAM code (liu-zhy/temporal-adaptive-module) and
MMAction2 (1.x and 0.x model zoos) publish for TANet-R50, with its layout (models/convert.py's names),
the checksum where one is published, the test protocol the publisher reports with (frames, sampler,
views, crop, how views are averaged) and the publisher's top-1/top-5 (%), as published
(the peers' READMEs and metafiles). A file published with
two protocols (MMAction2's Sth-V1 "efficient" 1x1 and "accurate" 2x3) has one row per protocol.

Checksums: MMAction2 names each published file ``<name>-<first 8 hex digits of its SHA-256>.pth``
(its ``publish_model.py``), so that prefix is the published checksum; the official release (Google Drive
folders, each a ``ckpt.best.pth.tar``) publishes none (``sha256_prefix=None``).

The ledger (``zoo_ledger.jsonl``, one JSON row per evaluation, and ``zoo_ledger.md`` rendered from it)
records, for each ``python -m tanet_lightning.zoo eval``: reported and measured numbers, the views, the
split fingerprint of the data when known, the file's SHA-256, the date and the project version.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..base.files import atomic_write_text

OFFICIAL = "official TAM code"
MM1, MM0 = "MMAction2 1.x", "MMAction2 0.x"
_DRIVE = "https://drive.google.com/drive/folders/"
_MM1 = "https://download.openmmlab.com/mmaction/v1.0/recognition/tanet/"
_MM0 = "https://download.openmmlab.com/mmaction/recognition/tanet/"
_OFFICIAL_README = "liu-zhy/temporal-adaptive-module README, Model ZOO"
_MM1_README = "mmaction2 configs/recognition/tanet/README.md (1.x)"
_MM0_META = "mmaction2 0.x configs/recognition/tanet/metafile.yml"
MM1_MEAN_NOTE = ("MMAction2 1.x's TANet configs normalise with mean 103.5 for blue (sic), this pipeline with "
                 "103.53: eval warns about it")


@dataclass(frozen=True)
class Release:
    name: str  # the zoo's own name: <publisher>_<dataset>_<T>f[_<views>]
    publisher: str
    layout: str  # models/convert.py's SOURCES: official | mmaction2
    file: str  # the file name as published
    url: str  # where it is published (nothing is downloaded here)
    sha256_prefix: str | None  # leading hex digits of the file's SHA-256 as published; None: none published
    dataset: str  # conf/data/<dataset>.yaml: the data config its test protocol is read with
    num_frames: int
    num_classes: int
    sampler: str  # dense | uniform
    views: str  # clips x crops
    crop: int  # the test crop (short side 256 everywhere)
    view_average: str  # logits (official) | prob (MMAction2: average_clips='prob')
    top1: float  # reported, %
    top5: float
    reported_at: str  # where the numbers are published
    backbone: str = "resnet50"
    short_side: int = 256
    dense_window: int = 64
    class_order: str = "data"  # data: the data config's class order; sorted: the publisher's ids follow sorted names
    notes: str = ""

    @property
    def checksum(self) -> str:
        return f"sha256 {self.sha256_prefix}…" if self.sha256_prefix else "not published"

    @property
    def protocol(self) -> dict[str, object]:
        """The publisher's test protocol as eval's settings (the keys a user's override would change)."""
        return {"data.num_frames": self.num_frames, "data.sampler": self.sampler,
                "data.dense_window": self.dense_window, "data.short_side": self.short_side,
                "data.test_crop_size": self.crop, "data.test_views": self.views, "view_average": self.view_average}

    @property
    def protocol_text(self) -> str:
        return f"{self.sampler} {self.views} @{self.crop}, {self.view_average}"

    def check_sha256(self, digest: str) -> str:
        """match | mismatch | not published."""
        if not self.sha256_prefix:
            return "not published"
        return "match" if digest.lower().startswith(self.sha256_prefix.lower()) else "mismatch"


def _official(dataset: str, t: int, folder: str, views: str, crop: int, top1: float, top5: float,
              sampler: str = "uniform", **kw) -> Release:
    return Release(f"official_{dataset}_{t}f", OFFICIAL, "official", "ckpt.best.pth.tar", _DRIVE + folder, None,
                   dataset, t, 400 if dataset == "kinetics400" else 174, sampler, views, crop, "logits", top1, top5,
                   _OFFICIAL_README, **kw)


def _mm(name: str, publisher: str, stem: str, sha: str, dataset: str, t: int, views: str, crop: int, top1: float,
        top5: float, sampler: str = "uniform", notes: str = "") -> Release:
    base = (_MM1 if publisher == MM1 else _MM0) + stem.rsplit("_", 1)[0] + "/"
    file = f"{stem}-{sha}.pth"
    return Release(name, publisher, "mmaction2", file, base + file, sha, dataset, t,
                   400 if dataset == "kinetics400" else 174, sampler, views, crop, "prob", top1, top5,
                   _MM1_README if publisher == MM1 else _MM0_META, notes=notes)


_K400_OFFICIAL = ("10 dense clips x 3 crops of 256 (`--sample dense-10 --test_crops=3 --full_res`); "
                  "MMAction2 re-tested the 8f file on its 19,796-video val set: 76.22 / 92.53")
_V1_OFFICIAL = ("class ids: the TSM/TAM label tools sort the class names (zoo eval gives the converted file "
                "the data's names in sorted order, so eval reorders its classifier rows); 1 centre crop 224")
_V2_OFFICIAL = "2 clips (`--sample uniform-2`) x 3 crops of 256 (`--full_res`)"
_K400_MM = "mm's table says '8 clips x 3 crop': DenseSampleFrames test mode takes 10 clips of 8 frames"
_V1_MM_ACC = "'accurate': twice_sample (2 clips) x ThreeCrop 256; "
_V1_MM_EFF = "'efficient': 1 clip, centre crop 224 (mm's val pipeline); "

RELEASES: dict[str, Release] = {r.name: r for r in (
    _official("kinetics400", 8, "1sFfmP3yrfc7IzRshEELOby7-aEoymIFL?usp=sharing", "10x3", 256, 76.1, 92.3,
              sampler="dense", notes=_K400_OFFICIAL),
    _official("kinetics400", 16, "1nCefjTSPm0Q67e2oSHAhYQgofcim9jOe?usp=sharing", "10x3", 256, 76.9, 92.9,
              sampler="dense", notes=_K400_OFFICIAL.split(";")[0]),
    _official("sthv1", 8, "1XX5CNDvckaV7d9EH24SXmQsMT7s_a3Zm?usp=sharing", "1x1", 224, 46.5, 75.8,
              class_order="sorted", notes=_V1_OFFICIAL),
    _official("sthv1", 16, "1wPbID2bVETG91SxpDURI_GeAOn8sqCda?usp=sharing", "1x1", 224, 47.6, 77.7,
              class_order="sorted", notes=_V1_OFFICIAL),
    _official("sthv2", 8, "1dNxo2F4yiREfq4FdFAaSzPZbtYz8qrq7?usp=sharing", "2x3", 256, 62.7, 88.0, notes=_V2_OFFICIAL),
    _official("sthv2", 16, "1dr5MEJKVEL_xVFrrHDzPOmdV_xZHX2Py?usp=sharing", "2x3", 256, 64.6, 89.5, notes=_V2_OFFICIAL),
    _mm("mmaction2_kinetics400_8f", MM1, "tanet_imagenet-pretrained-r50_8xb8-dense-1x1x8-100e_kinetics400-rgb_20220919",
        "a34346bc", "kinetics400", 8, "10x3", 256, 76.25, 92.41, sampler="dense",
        notes=f"{_K400_MM}; {MM1_MEAN_NOTE}"),
    _mm("mmaction2_sthv1_8f", MM1, "tanet_imagenet-pretrained-r50_8xb8-1x1x8-50e_sthv1-rgb_20220906", "de50e4ef",
        "sthv1", 8, "2x3", 256, 49.71, 77.43, notes=_V1_MM_ACC + MM1_MEAN_NOTE),
    _mm("mmaction2_sthv1_8f_1x1", MM1, "tanet_imagenet-pretrained-r50_8xb8-1x1x8-50e_sthv1-rgb_20220906", "de50e4ef",
        "sthv1", 8, "1x1", 224, 46.98, 75.75, notes=_V1_MM_EFF + MM1_MEAN_NOTE),
    _mm("mmaction2_sthv1_16f", MM1, "tanet_imagenet-pretrained-r50_8xb6-1x1x16-50e_sthv1-rgb_20220919", "cc37e9b8",
        "sthv1", 16, "2x3", 256, 50.95, 79.28, notes=_V1_MM_ACC + MM1_MEAN_NOTE),
    _mm("mmaction2_sthv1_16f_1x1", MM1, "tanet_imagenet-pretrained-r50_8xb6-1x1x16-50e_sthv1-rgb_20220919", "cc37e9b8",
        "sthv1", 16, "1x1", 224, 48.24, 78.16, notes=_V1_MM_EFF + MM1_MEAN_NOTE),
    _mm("mmaction2_0x_kinetics400_8f", MM0, "tanet_r50_dense_1x1x8_100e_kinetics400_rgb_20210219", "032c8e94",
        "kinetics400", 8, "10x3", 256, 76.28, 92.60, sampler="dense",
        notes="trained and tested on frames extracted at short side 320; " + _K400_MM),
    _mm("mmaction2_0x_sthv1_8f", MM0, "tanet_r50_1x1x8_50e_sthv1_rgb_20210630", "f4a48609", "sthv1", 8, "2x3", 256,
        49.58, 77.31, notes=_V1_MM_ACC + "frames at height 100 in training"),
    _mm("mmaction2_0x_sthv1_8f_1x1", MM0, "tanet_r50_1x1x8_50e_sthv1_rgb_20210630", "f4a48609", "sthv1", 8, "1x1", 224,
        47.34, 75.72, notes=_V1_MM_EFF + "frames at height 100 in training"),
    _mm("mmaction2_0x_sthv1_16f", MM0, "tanet_r50_1x1x16_50e_sthv1_rgb_20211202", "370c2128", "sthv1", 16, "2x3", 256,
        50.91, 79.13, notes=_V1_MM_ACC + "frames at height 100 in training"),
    _mm("mmaction2_0x_sthv1_16f_1x1", MM0, "tanet_r50_1x1x16_50e_sthv1_rgb_20211202", "370c2128", "sthv1", 16, "1x1",
        224, 49.05, 77.90, notes=_V1_MM_EFF + "frames at height 100 in training"),
)}


def release_of_file(file: str | os.PathLike) -> Release | None:
    """The release a file name is (MMAction2's names are unique; ``ckpt.best.pth.tar`` is every official one)."""
    name = Path(file).name
    found = [r for r in RELEASES.values() if r.file == name and r.layout == "mmaction2"]
    return found[0] if found else None


def releases_text(releases: Iterable[Release] = ()) -> str:
    """The table as ``zoo list`` prints it: aligned columns, then where each file is published."""
    rows = list(releases) or list(RELEASES.values())
    head = ("name", "layout", "dataset", "T", "test protocol", "top-1", "top-5", "checksum", "file")
    table = [head] + [(r.name, r.layout, r.dataset, str(r.num_frames), r.protocol_text, f"{r.top1:.2f}",
                       f"{r.top5:.2f}", r.checksum, r.file) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines += ["", "top-1/top-5: as reported by the publisher (%); test protocol: sampler, clips x crops, crop size, "
              "how the views' scores are averaged; checksum: published SHA-256 prefix (official files: none published)",
              "", "where each file is published (nothing is downloaded here):"]
    lines += [f"  {r.name}: {r.url}" for r in rows]
    lines += ["", "notes:"] + [f"  {r.name}: {r.notes}" for r in rows if r.notes]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The ledger

LEDGER = "zoo_ledger.jsonl"


def append_row(path: str | os.PathLike, row: Mapping) -> list[dict]:
    """Append one evaluation to the JSONL ledger and rewrite its markdown table beside it (``.md``); every row."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(dict(row), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    rows = read_rows(path)
    atomic_write_text(path.with_suffix(".md"), ledger_markdown(rows))
    return rows


def read_rows(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fingerprint_cell(fp) -> str:
    if not fp:
        return "not recorded"
    if isinstance(fp, Mapping):
        return "; ".join(f"{k} {str(v)[:12]}" if not isinstance(v, Mapping) else
                         f"{k}: " + ", ".join(f"{kk} {str(vv)[:12]}" for kk, vv in v.items()) for k, v in fp.items())
    return str(fp)[:40]


def ledger_markdown(rows: Iterable[Mapping]) -> str:
    lines = ["# Released TANet checkpoints: reported vs measured", "",
             "Written by `python -m tanet_lightning.zoo eval` (one row per evaluation, newest last); the "
             "rows themselves are in the .jsonl beside this file.", "",
             "| date | release | reported top-1 / top-5 | measured top-1 / top-5 | Δ top-1 | views | videos | "
             "split fingerprint | file sha256 | deviations | version |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rep, mea = r.get("reported", {}), r.get("measured", {})
        delta = mea.get("top1", 0.0) - rep.get("top1", 0.0)
        deviations = "; ".join([*r.get("deviations", []), *r.get("differs", [])]) or "none"
        lines.append(
            f"| {r.get('date', '')[:19]} | {r.get('release')} | {rep.get('top1', 0):.2f} / {rep.get('top5', 0):.2f} | "
            f"{mea.get('top1', 0):.2f} / {mea.get('top5', 0):.2f} | {delta:+.2f} | {r.get('views')} | "
            f"{mea.get('num_videos', '?')} | {_fingerprint_cell(r.get('split_fingerprint'))} | "
            f"{str(r.get('sha256', ''))[:12]}… ({r.get('checksum')}) | {deviations.replace('|', '/')} | "
            f"{r.get('project_version')} |")
    return "\n".join(lines) + "\n"
