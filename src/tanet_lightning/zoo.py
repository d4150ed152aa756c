"""Released TANet checkpoints and the ledger of what they measure here.

``python -m tanet_lightning.zoo list`` prints the table (analysis/zoo.py): file, layout, published
checksum, test protocol, where it is published, the publisher's top-1/top-5.

``python -m tanet_lightning.zoo eval NAME ckpt=FILE [data=...] [ledger=zoo_ledger.jsonl] [force=true] [KEY=VALUE ...]``
checks a local copy of release NAME (its SHA-256 against the published prefix, its layout and
architecture against the table), converts it (models/convert.py; the publisher's class order and test
protocol travel with it), evaluates it through eval's own code path under the publisher's protocol
(T, sampler, clips x crops, crop, view averaging) and appends reported vs measured, the views, the split
fingerprint, the date and the project version to the ledger (JSON lines, and a markdown table beside it).
Other KEY=VALUE are eval's settings (``data.root=...``, ``trainer.devices=...``); one that changes the
publisher's protocol is recorded in the row as a deviation. Nothing is downloaded: a missing file is
answered with where it is published.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import hashlib
import json
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf, open_dict

from . import __version__, config
from . import convert as convert_app
from . import eval as eval_app
from .analysis.zoo import LEDGER, RELEASES, Release, append_row, releases_text
from .base.errors import CheckpointError, ConfigError, handle_user_errors
from .config import schema
from .models.convert import Converted, convert
from .runs import build

log = logging.getLogger("tanet_lightning")

OWN_KEYS = ("ckpt", "ledger", "force")


def find_release(name: str) -> Release:
    if name not in RELEASES:
        near = difflib.get_close_matches(name, list(RELEASES), n=3)
        hint = f"did you mean {' or '.join(near)}? " if near else ""
        raise ConfigError(f"{name!r} is not a release of the table: {hint}`python -m tanet_lightning.zoo list` "
                          f"shows them ({', '.join(RELEASES)})")
    return RELEASES[name]


def split_args(tokens: list[str]) -> tuple[dict[str, str], list[str]]:
    """(zoo's own keys, eval's overrides)."""
    own, rest = {}, []
    for token in tokens:
        key, eq, value = token.partition("=")
        if not eq:
            raise ConfigError(f"{token!r}: give KEY=VALUE (ckpt=FILE, data=NAME, ledger=FILE, force=true, or an "
                              "eval setting such as data.root=DIR)")
        (own.__setitem__(key, value) if key in OWN_KEYS else rest.append(token))
    return own, rest


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def differences(release: Release, conv: Converted) -> list[str]:
    """What the file is that the table says the release is not."""
    mk = conv.model_kwargs
    temporal = mk["temporal"]["name"] if isinstance(mk["temporal"], dict) else mk["temporal"]
    found = {"layout": (conv.source, release.layout), "backbone": (mk["backbone"], release.backbone),
             "T": (conv.num_frames, release.num_frames), "classes": (conv.num_classes, release.num_classes),
             "temporal module": (temporal, "tam")}
    return [f"{what} {got} (the release: {want})" for what, (got, want) in found.items() if got != want]


def split_fingerprint(out: Path, datamodule) -> dict | None:
    """The fingerprint of the data evaluated on, where the data layer records one: metrics.json's
    ``data_fingerprint`` (its test split when given per split), else the DataModule's."""
    metrics = out / "metrics.json"
    fp = json.loads(metrics.read_text()).get("data_fingerprint") if metrics.is_file() else None
    if fp is None:
        fp = getattr(datamodule, "data_fingerprint", None)
        fp = fp() if callable(fp) else fp
    if isinstance(fp, dict) and isinstance(fp.get("test"), dict):
        return {"test": fp["test"]}
    return fp or None


def evaluate_release(name: str, tokens: list[str], argv: list[str]) -> dict:
    release = find_release(name)
    own, overrides = split_args(tokens)
    where = f"{release.name} ({release.publisher}: {release.file}) is published at {release.url}"
    if not own.get("ckpt"):
        raise ConfigError(f"zoo eval {name} needs ckpt=FILE, a local copy of the release: {where} (nothing is "
                          "downloaded here)")
    force = own.get("force", "false").lower()
    if force not in ("true", "false"):
        raise ConfigError(f"force={own['force']!r} must be true or false")
    path = Path(own["ckpt"])
    if not path.is_file():
        raise CheckpointError(f"ckpt={path}: no such file; {where} (nothing is downloaded here)")
    print(where)
    digest = sha256(path)
    checksum = release.check_sha256(digest)
    if checksum == "mismatch" and force != "true":
        raise CheckpointError(f"ckpt={path}: its SHA-256 starts {digest[:8]}, the published {release.file}'s "
                              f"{release.sha256_prefix}: another file (a truncated download, another release?); "
                              "force=true evaluates it anyway and records the mismatch")

    given = {o.partition("=")[0].lstrip("+~"): o.partition("=")[2] for o in overrides}
    deviations = [f"{k}={given[k]} (publisher: {v})" for k, v in release.protocol.items()
                  if k in given and given[k] != str(v)]
    composed = [*([] if "data" in given else [f"data={release.dataset}"]),
                *(f"{k}={v}" for k, v in release.protocol.items() if k not in given), *overrides,
                "ckpt_path=pending"]  # the converted file, once written
    cfg = config.compose_app("eval", composed)
    out = Path(cfg.paths.log_dir) / "zoo" / release.name / datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    with open_dict(cfg):
        cfg.paths.output_dir = str(out.resolve())
    schema.validate(cfg, "eval")
    datamodule = build.instantiate_data(cfg)  # a missing dataset stops here, before anything is written

    conv = convert(path, num_frames=None)
    differs = differences(release, conv)
    if differs and force != "true":
        raise CheckpointError(f"ckpt={path} is not {release.name}'s file: {'; '.join(differs)}; force=true "
                              "evaluates it anyway (the row records the differences)")
    names = list(datamodule.class_names)
    if len(names) != conv.num_classes:
        names = [str(i) for i in range(conv.num_classes)]  # eval refuses the class count, naming both
    elif release.class_order == "sorted":
        names = sorted(names)  # the publisher's class i is the i-th name in sorted order
    protocol = convert_app.data_config(release.dataset, release.num_frames, conv.source, sampler=release.sampler,
                                       dense_window=release.dense_window, short_side=release.short_side,
                                       test_crop_size=release.crop, test_views=release.views)
    converted = convert_app.write_project_checkpoint(conv, out / "converted.ckpt", names, protocol,
                                                     release.view_average, str(path))
    with open_dict(cfg):
        cfg.ckpt_path = str(converted)
    metrics, objects = eval_app.evaluate(cfg)

    measured = {k: 100 * float(metrics[f"test/{k}"]) for k in ("top1", "top5", "mean_class_acc")
                if f"test/{k}" in metrics}
    measured["num_videos"] = int(metrics.get("test/num_videos", 0))
    row = {"release": release.name, "publisher": release.publisher, "layout": conv.source,
           "file": str(path.resolve()), "sha256": digest, "checksum": checksum,
           "dataset": given.get("data", release.dataset), "reported": {"top1": release.top1, "top5": release.top5},
           "measured": measured, "views": str(cfg.data.test_views),
           "protocol": {k: OmegaConf.select(cfg, k) for k in release.protocol}, "deviations": deviations,
           "differs": differs, "split_fingerprint": split_fingerprint(out, objects["datamodule"]),
           "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "project_version": __version__, "eval_dir": str(out.resolve()), "converted": str(converted.resolve()),
           "command": " ".join(["python -m tanet_lightning.zoo", *argv])}
    ledger = Path(own.get("ledger") or LEDGER)
    append_row(ledger, row)
    print(f"{release.name}: reported {release.top1:.2f} / {release.top5:.2f}, measured {measured.get('top1', 0):.2f} "
          f"/ {measured.get('top5', 0):.2f} (top-1 {measured.get('top1', 0) - release.top1:+.2f}) on "
          f"{measured['num_videos']} videos, views {row['views']}"
          f"{'; deviations: ' + '; '.join(deviations + differs) if deviations or differs else ''}")
    print(f"ledger: {ledger} (+ {ledger.with_suffix('.md')}); eval run: {out}")
    return row


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tanet_lightning.zoo", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the table of released checkpoints")
    e = sub.add_parser("eval", help="convert and evaluate a local copy of a release; append to the ledger")
    e.add_argument("name", help="a release of `zoo list`")
    e.add_argument("settings", nargs="*", help="ckpt=FILE (required), ledger=FILE, force=true, eval's KEY=VALUE")
    return p.parse_args(argv)


@handle_user_errors
def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.command == "list":
        print(releases_text())
        return
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(message)s")
    evaluate_release(args.name, args.settings, argv)


if __name__ == "__main__":
    main()
