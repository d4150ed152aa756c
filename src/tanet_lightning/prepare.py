"""A dataset copy that loads fast: ``python -m tanet_lightning.prepare data=<config> [data.* keys] out=DIR
[gop=30] [short_side=320] [workers=N]``.

Reads any dataset the DataModule reads (the same ``data=`` configs and keys), re-encodes every video with
a keyframe at least every ``gop`` frames (data/prepare.py), rewrites the annotation files, writes the index
sidecar the loader uses instead of demuxing each file (data/index.py), and prints the ``data.*`` keys that
train on the copy. Unreadable videos are listed in ``<out>/prepare_failed.tsv``, never fatal; a readable
video whose copy at ``crf`` is not close enough is kept at a higher quality or as the source
(``<out>/prepare_retried.tsv``), never left out. The summary gives the videos per split of the dataset and
of the copy. A second run resumes; SIGTERM or Ctrl-C stops it cleanly (exit 143 or 130) with every finished
video kept. ``out`` may hold nothing prepare reads, and no file there is replaced unless prepare wrote it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from . import config
from .base.errors import ConfigError, handle_user_errors
from .config import schema
from .data import prepare_dataset, shards
from .runs import build, signals

log = logging.getLogger("tanet_lightning")


def prepare(cfg: DictConfig) -> dict:
    """Prepare ``cfg.data``'s dataset into ``cfg.out``. Returns {"plan", "result", "overrides"} (the
    ``data.*`` keys that read the copy)."""
    schema.validate(cfg, "prepare")
    if cfg.get("upload") and not cfg.get("shards"):
        raise ConfigError(f"upload={cfg.upload} copies shards: give shards=true as well")
    datamodule = build.instantiate_data(cfg)
    datamodule.prepare_data()  # synthetic data is generated on first use
    out = final = Path(os.path.abspath(cfg.out))
    if cfg.get("shards"):  # the files first (resumable, parallel), then packed into shards
        out = final / shards.STAGING
        if not out.exists() and shards.manifest(str(final)) is not None:  # a finished earlier run
            log.info("%s holds finished shards (delete it to write them again)", final)
            return {"plan": None, "result": None, "overrides": _upload(cfg, [f"data.root={final}"], final)}
    plan = prepare_dataset.plan(datamodule.reader, datamodule.source, datamodule.class_names, out)
    manifest = prepare_dataset.check_output(plan, out)  # before any work: no input in out, no foreign file
    workers = cfg.get("workers") or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                     else os.cpu_count() or 1)
    videos = sum(not j.frames for j in plan.jobs)
    log.info("preparing %d videos%s of %s into %s (gop %d, short side %s, %d workers)", videos,
             f" and linking {len(plan.jobs) - videos} frame folders" if videos < len(plan.jobs) else "",
             datamodule.source.root, out, cfg.gop, cfg.short_side, workers)
    try:
        with signals.stop_on_signals():
            result = prepare_dataset.run(plan, out, cfg.gop, cfg.short_side, cfg.crf, workers, cfg.progress,
                                         manifest)
    except signals.Stopped as e:
        log.error("stopped by %s: the finished videos are kept; the same command prepares the rest", e.name)
        raise
    prepare_dataset.check_prepared(datamodule.reader, plan, result.failed)
    made = len(result.entries) - result.done_before
    log.info("prepared %d videos in %.0f s (%.1f videos/s)%s", made, result.seconds,
             made / max(result.seconds, 1e-9), f"; {result.done_before} were done already" if result.done_before
             else "")
    if result.retried:
        kinds = Counter(kept for kept, _ in result.retried.values())
        shown = "\n  ".join(f"{rel}: {kept} ({why})" for rel, (kept, why) in sorted(result.retried.items())[:10])
        log.warning("%d videos were not close enough to their source at crf=%d and are kept at a higher quality "
                    "or as the source (%s; all listed in %s):\n  %s", len(result.retried), cfg.crf,
                    ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())), out / prepare_dataset.RETRIED, shown)
    if result.failed:
        shown = "\n  ".join(f"{rel}: {why}" for rel, why in list(sorted(result.failed.items()))[:10])
        log.warning("%d videos could not be read and are left out of the copy's annotations (all listed in "
                    "%s):\n  %s", len(result.failed), out / prepare_dataset.FAILED, shown)
    splits = prepare_dataset.split_sizes(plan, result.failed)
    log.info("videos per split, dataset -> copy: %s", ", ".join(f"{s} {a} -> {b}" for s, (a, b) in splits.items()))
    overrides = prepare_dataset.training_overrides(plan, out)
    if cfg.get("shards"):
        overrides = _upload(cfg, _to_shards(cfg, overrides, out, final), final)
    log.info("train on the copy: python -m tanet_lightning.train %s", " ".join([*_data_choice(), *overrides]))
    return {"plan": plan, "result": result, "overrides": overrides, "splits": splits}



def _to_shards(cfg: DictConfig, overrides: list[str], files: Path, out: Path) -> list[str]:
    """Pack the prepared files (read as training would read them) into LitData shards in ``out``; the files
    go once the shards are whole. Returns the keys that train on the shards."""
    copy = cfg.copy()
    for item in overrides:
        key, _, value = item.partition("=")
        OmegaConf.update(copy, key, value, merge=False)
    with signals.stop_on_signals():
        written = shards.write_dataset(build.instantiate_data(copy), out, cfg.chunk_bytes)
    shutil.rmtree(files)
    log.info("wrote %s shards of %s to %s", shards.ENGINE,
             ", ".join(f"{s} ({len(v['videos'])} videos)" for s, v in written["splits"].items()), out)
    return [f"data.root={out}"]


def _upload(cfg: DictConfig, overrides: list[str], out: Path) -> list[str]:
    """``upload=s3://bucket/prefix``: copy the shards there (credentials and endpoint from the environment)."""
    if not cfg.get("upload"):
        return overrides
    n = shards.upload(out, cfg.upload)
    log.info("uploaded %d files of %s to %s", n, out, cfg.upload)
    return [f"data.root={cfg.upload}"]


def _data_choice() -> list[str]:
    """``data=<config>`` as it was chosen (empty outside a Hydra run)."""
    try:
        return [f"data={HydraConfig.get().runtime.choices['data']}"]
    except (ValueError, KeyError, AttributeError):
        return []


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="prepare")
@handle_user_errors
def main(cfg: DictConfig) -> None:
    prepare(cfg)


if __name__ == "__main__":
    main()
