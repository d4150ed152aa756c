"""Split fingerprints in a run's files, and the comparison of the data an application is given with the data a
checkpoint was made with (data/fingerprint.py says what a fingerprint holds).

A run directory gets ``fingerprint.json`` ({split: record}); metrics.json and checkpoints the same records
(``data_fingerprint``), checkpoints also the (id, label) pairs (``data_video_ids``), so that ``eval`` can
name what is missing. A difference is a warning: a mirror with fewer videos is still worth a number, as
long as the number says which videos it is of.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from ..base.files import atomic_write_json, atomic_write_text
from ..data.fingerprint import SplitFingerprint, compare
from .lifecycle import rank

log = logging.getLogger("tanet_lightning")

FILE = "fingerprint.json"


def records(fingerprints: Mapping[str, SplitFingerprint]) -> dict[str, dict]:
    return {split: fp.to_dict() for split, fp in fingerprints.items()}


def write(out: Path, fingerprints: Mapping[str, SplitFingerprint]) -> dict[str, dict]:
    """``out/fingerprint.json`` (rank 0); returns the records, for metrics.json."""
    data = records(fingerprints)
    if rank() == "0":
        atomic_write_json(out / FILE, data)
    return data


def check_against_checkpoint(raw: Mapping, current: SplitFingerprint, split: str, out: Path,
                             where: str) -> list[str]:
    """Warn what differs between ``split`` as given and as the checkpoint (``raw``: its dict; ``where``: how
    to name it) recorded it; the ids it had and this data lacks go to ``out/missing_<split>.txt`` (those
    it did not have to ``extra_<split>.txt``). Returns the warnings; nothing for a checkpoint without a
    fingerprint (saved before they existed, or converted from a peer's release)."""
    saved = (raw.get("data_fingerprint") or {}).get(split)
    if not saved:
        log.info("%s records no fingerprint of its %s data (saved before fingerprints, or converted): "
                 "nothing to compare", where, split)
        return []
    missing_file = out / f"missing_{split}.txt"
    diff = compare(split, saved, current, (raw.get("data_video_ids") or {}).get(split), missing_file,
                   when="in this checkpoint's run")
    if rank() != "0":
        return diff.messages
    for path, ids in ((missing_file, diff.missing), (out / f"extra_{split}.txt", diff.extra)):
        if ids:
            atomic_write_text(path, "\n".join(ids) + "\n")
    for message in diff.messages:
        log.warning("%s (%s)", message, where)
    return diff.messages
