"""Does a model or checkpoint fit what it is used with? Each rule is written here once, with one message
per mismatch that names the setting to change.

* the clip length: ``check_clip_length`` (a clip batch, a checkpoint, a converted peer file) and
  ``check_frame_batch`` (a temporal module's (N*T, C, H, W) input);
* a checkpoint against the run's data (T, class count, class names by name): ``check_fits``, used by
  train's resume, eval and ``model.init_from``; it returns how the checkpoint's classes map onto the data's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..base.errors import CheckpointError, ConfigError

log = logging.getLogger("tanet_lightning")

T_RULE = "the clip length must equal the model's T (no temporal downsampling: TAM's global branch has T inputs)"
USES = ("eval", "resume", "init_from")


def check_clip_length(clip: int, model: int, *, what: str, fix: str, error: type[Exception] = ConfigError) -> None:
    """``clip`` frames offered to a model built for ``model``: refused with ``fix`` (the setting to change)."""
    if int(clip) != int(model):
        raise error(f"{what} has T={clip} frames but the model has T={model}: {T_RULE}; {fix}")


def check_frame_batch(frames: int, num_frames: int) -> int:
    """Clips in a temporal module's (N*T, C, H, W) batch; a batch that is not whole clips is the T rule broken."""
    if frames % num_frames:
        raise ConfigError(f"a batch of {frames} frames is not a whole number of {num_frames}-frame clips: "
                          f"{T_RULE}; set data.num_frames={num_frames}")
    return frames // num_frames


# the test protocol's fields and the data.* key that sets each (test_views: eval's own choice, not compared)
PROTOCOL_KEYS = {"sampler": "data.sampler", "dense_window": "data.dense_window", "short_side": "data.short_side",
                 "crop_size": "data.test_crop_size", "frame_template": "data.frame_template",
                 "start_index": "data.start_index", "mean": "normalisation mean", "std": "normalisation std"}


def protocol_differences(saved: Mapping, given: Mapping) -> list[str]:
    """``key: saved -> given`` for every protocol field where the two differ."""
    out = []
    for field, key in PROTOCOL_KEYS.items():
        a, b = saved.get(field), given.get(field)
        if a is None or b is None:
            continue
        same = [round(float(v), 4) for v in a] == [round(float(v), 4) for v in b] if field in ("mean", "std") \
            else a == b
        if not same:
            out.append(f"{key}: {a} in the checkpoint, {b} here")
    return out


def index_names(names: Sequence[str] | None) -> bool:
    """Names that only number the classes ("0", "1", ...: ``convert`` without ``--classes``) say nothing."""
    return names is not None and list(names) == [str(i) for i in range(len(names))]


@dataclass(frozen=True)
class ClassMatch:
    """How a checkpoint's classifier maps onto the data's classes.

    ``order`` is None when the classes are the same in the same order; else, for each data class, the
    checkpoint's row that scores it (same names, another order). ``restart``: init_from onto other
    classes, the classifier starts afresh.
    """

    order: list[int] | None = None
    restart: bool = False


def check_fits(ckpt, *, num_frames: int, class_names: Sequence[str] | None, use: str,
               num_classes: int | None = None, protocol: Mapping | None = None) -> ClassMatch:
    """The checkpoint ``ckpt`` (a ``models.weights_file.Checkpoint``) against the run's T and classes.

    ``use``: ``resume`` (train's ``ckpt_path``, also ``train=false``) needs the same classes in the same
    order; ``eval`` accepts the same names in another order (the classifier rows are reordered: the
    returned ``order``); ``init_from`` is fine-tuning: another class set restarts the classifier, the
    same set in another order is reordered. Checkpoints saved without class names are matched by count.
    ``protocol``: the data's test protocol (``TestProtocol.to_dict()``); where it reads videos otherwise
    than the checkpoint's saved one, a warning names the ``data.*`` keys (the data config chooses).
    """
    if use not in USES:
        raise ValueError(f"use must be one of {USES}, got {use!r}")
    key = "model.init_from" if use == "init_from" else ckpt.key
    where = f"{key}={ckpt.path}"
    check_clip_length(num_frames, ckpt.num_frames, what=f"data.num_frames={num_frames} (the run's clips)",
                      fix=f"{where} was trained with T={ckpt.num_frames}: set data.num_frames={ckpt.num_frames}",
                      error=CheckpointError)
    saved_protocol = getattr(ckpt, "data_config", None)
    if protocol is not None and saved_protocol:
        changed = protocol_differences(saved_protocol, protocol)
        if changed:
            log.warning("%s was tested reading videos otherwise than this data config does (%s): the data config "
                        "decides here; set those keys to reproduce its test", where, ", ".join(changed))
    n_data = len(class_names) if class_names is not None else num_classes
    if n_data is not None and n_data != ckpt.num_classes:
        if use == "init_from":
            log.info("model.init_from: the checkpoint has %d classes, the data %d: fine-tuning, the classifier "
                     "starts afresh", ckpt.num_classes, n_data)
            return ClassMatch(restart=True)
        raise CheckpointError(f"{where} has {ckpt.num_classes} classes but the data config gives {n_data}: "
                              f"{_other_data_hint(use, where)}")
    saved = ckpt.class_names
    if saved is None or class_names is None or index_names(saved):
        if saved is None or index_names(saved):
            log.info("%s carries no class names: its %d classes are matched to the data's by count only",
                     where, ckpt.num_classes)
        return ClassMatch()
    saved, given = list(saved), list(class_names)
    if saved == given:
        return ClassMatch()
    if sorted(saved) == sorted(given) and len(set(saved)) == len(saved):
        moved = [f"{name!r} is class {saved.index(name)} in the checkpoint, {i} in the data"
                 for i, name in enumerate(given) if saved[i] != name]
        if use == "resume":
            raise CheckpointError(
                f"{where} has the data's class names in another order ({len(moved)} moved: "
                f"{'; '.join(moved[:5])}{' ...' if len(moved) > 5 else ''}): resuming would train every "
                "moved class on another's classifier row; give the classes in the checkpoint's order "
                "(data.classes file / class folders), or fine-tune with model.init_from=" + str(ckpt.path))
        log.warning("%s: same class names in another order (%s%s): its classifier rows are reordered to the "
                    "data's", where, "; ".join(moved[:3]), " ..." if len(moved) > 3 else "")
        return ClassMatch(order=[saved.index(name) for name in given])
    if use == "init_from":
        log.info("model.init_from: the checkpoint's classes are not the data's (%d only in the checkpoint, %d "
                 "only in the data): fine-tuning, the classifier starts afresh",
                 len(set(saved) - set(given)), len(set(given) - set(saved)))
        return ClassMatch(restart=True)
    only_ckpt = [n for n in saved if n not in set(given)]
    only_data = [n for n in given if n not in set(saved)]
    raise CheckpointError(
        f"{where} was trained on other classes than the data's: only in the checkpoint {only_ckpt[:8]}"
        f"{' ...' if len(only_ckpt) > 8 else ''}, only in the data {only_data[:8]}"
        f"{' ...' if len(only_data) > 8 else ''}: {_other_data_hint(use, where)}")


def _other_data_hint(use: str, where: str) -> str:
    if use == "eval":
        return "evaluate it on the dataset it was trained on (set data=... / data.classes)"
    return (f"a resume continues the same classes; to train on these, start a new run with "
            f"model.init_from={where.split('=', 1)[1]} (fine-tuning restarts the classifier)")
