"""Import TANet checkpoints of the official TAM code and of MMAction2 (and re-export to their layouts).

``convert_checkpoint(path_or_state_dict, source="auto")`` returns a state dict keyed exactly like the
``VideoClassifier`` that ``create_video_model`` builds, so ``model.load_state_dict(..., strict=True)``
works. ``convert`` also returns the architecture it read off the weights (backbone depth, T, K, alpha,
beta, classes), which is what ``python -m tanet_lightning.convert`` writes into a project checkpoint.

Key layouts (notes/reference_impl.md section 6):

* official (TSN wrapper saved from DataParallel): ``module.base_model.layerX.Y.net.conv1.weight``,
  ``...layerX.Y.tam.G.0.weight`` (older files: ``self_conv.conv_f`` = G, ``self_conv.conv_g`` = L),
  ``module.new_fc.*`` (the base model's own fc is a Dropout, so it has no keys).
* mmaction2 (Recognizer2D): ``backbone.conv1.conv/bn``, ``backbone.layerX.Y.block.convN.conv/bn``,
  ``...block.downsample.conv/bn``, ``backbone.layerX.Y.tam.G/L.*``, ``cls_head.fc_cls.*``.
* project: ``backbone.layerX.Y.conv1.weight``, ``...temporal.G.net.0.weight``, ``fc.*`` (a Lightning
  checkpoint adds ``net.`` in front).

Every key must find a place and every model key must be filled with a tensor of the right shape;
otherwise the error lists the keys and names the setting to change.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from .checkpoint import CheckpointError, load_checkpoint_file
from .fit import check_clip_length, check_fits
from .load import net_kwargs, read_checkpoint, source_of
from .video import create_video_model

__all__ = ["CheckpointError", "Converted", "SOURCES", "convert", "convert_checkpoint", "load_checkpoint_file",
           "load_init_weights", "to_peer_layout"]

log = logging.getLogger("tanet_lightning")

SOURCES = ("official", "mmaction2", "project")

# Bottleneck block counts per stage -> timm name (the peers release ResNet-50 TANets only; 101 costs nothing)
BOTTLENECK_DEPTHS = {(3, 4, 6, 3): "resnet50", (3, 4, 23, 3): "resnet101"}
BASIC_DEPTHS = {(2, 2, 2, 2): "resnet18", (3, 4, 6, 3): "resnet34"}
STAGE_OF_LAYER = {"layer1": "res2", "layer2": "res3", "layer3": "res4", "layer4": "res5"}


@dataclass
class Converted:
    state_dict: dict[str, torch.Tensor]  # VideoClassifier keys
    source: str  # official | mmaction2 | project
    model_kwargs: dict = field(default_factory=dict)  # create_video_model arguments (the model.* keys)
    extra: dict = field(default_factory=dict)  # what a project checkpoint carried (hparams, class names, ...)
    path: str = ""  # where it was read from, and the setting that named it (for messages)
    key: str = "src"

    @property
    def num_frames(self) -> int:
        return int(self.model_kwargs["num_frames"])

    @property
    def num_classes(self) -> int:
        return int(self.model_kwargs["num_classes"])

    @property
    def class_names(self) -> list[str] | None:
        return list(self.extra["class_names"]) if self.extra.get("class_names") else None


# ------------------------------------------------------------------------------------------------
# Reading


def _split_container(obj: Mapping) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, the rest of the checkpoint) for a bare state dict or {'state_dict': ...}."""
    if isinstance(obj.get("state_dict"), Mapping):
        extra = {k: v for k, v in obj.items() if k != "state_dict"}
        return dict(obj["state_dict"]), extra
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), {}
    raise CheckpointError(f"no state dict found: top-level keys are {sorted(obj)[:10]} "
                          f"(expected 'state_dict' or tensors)")


def detect_source(keys) -> str:
    keys = list(keys)
    if any(k.startswith(("module.base_model.", "base_model.", "module.new_fc.", "new_fc.")) for k in keys):
        return "official"
    if any(k.startswith("cls_head.") or k.startswith("backbone.conv1.conv.") for k in keys):
        return "mmaction2"
    if any(k.startswith(("net.backbone.", "backbone.")) for k in keys):
        return "project"
    raise CheckpointError(
        f"cannot tell where this checkpoint comes from (first keys: {keys[:5]}); expected the official TAM "
        f"layout (module.base_model.*), MMAction2 (backbone.*.block.*, cls_head.*) or this project's; "
        f"pass source=official|mmaction2|project (--source) if it is one of them"
    )


# ------------------------------------------------------------------------------------------------
# Key maps (ordered regex substitutions); each peer also has the inverse, for the round-trip test and
# for users who want to go back.

_BLOCK = r"(layer\d+\.\d+)"
_OFFICIAL_IN = [
    (r"^module\.", ""),
    (r"^base_model\.", "backbone."),
    (r"^new_fc\.", "fc."),
    (r"\.self_conv\.conv_f\.", ".tam.G."),
    (r"\.self_conv\.conv_g\.", ".tam.L."),
    (rf"{_BLOCK}\.net\.", r"\1."),
    (r"\.(conv\d)\.net\.", r".\1."),  # TSM-style shift wrapper around conv1
    (r"\.tam\.([GL])\.", r".temporal.\1.net."),
]
_OFFICIAL_OUT = [
    (r"\.temporal\.([GL])\.net\.", r".tam.\1."),
    (rf"{_BLOCK}\.(conv\d|bn\d|downsample)\.", r"\1.net.\2."),
    (r"^backbone\.", "module.base_model."),
    (r"^fc\.", "module.new_fc."),
]
_MM_IN = [
    (r"^backbone\.conv1\.conv\.", "backbone.conv1."),
    (r"^backbone\.conv1\.bn\.", "backbone.bn1."),
    (rf"{_BLOCK}\.block\.conv(\d)\.conv\.", r"\1.conv\2."),
    (rf"{_BLOCK}\.block\.conv(\d)\.bn\.", r"\1.bn\2."),
    (rf"{_BLOCK}\.block\.downsample\.conv\.", r"\1.downsample.0."),
    (rf"{_BLOCK}\.block\.downsample\.bn\.", r"\1.downsample.1."),
    (r"\.tam\.([GL])\.", r".temporal.\1.net."),
    (r"^cls_head\.fc_cls\.", "fc."),
]
_MM_OUT = [
    (r"^backbone\.conv1\.", "backbone.conv1.conv."),
    (r"^backbone\.bn1\.", "backbone.conv1.bn."),
    (rf"{_BLOCK}\.conv(\d)\.", r"\1.block.conv\2.conv."),
    (rf"{_BLOCK}\.bn(\d)\.", r"\1.block.conv\2.bn."),
    (rf"{_BLOCK}\.downsample\.0\.", r"\1.block.downsample.conv."),
    (rf"{_BLOCK}\.downsample\.1\.", r"\1.block.downsample.bn."),
    (r"\.temporal\.([GL])\.net\.", r".tam.\1."),
    (r"^fc\.", "cls_head.fc_cls."),
]
# keys with no place in the model that peers save for bookkeeping only
_IGNORED = re.compile(r"^(data_preprocessor\.|val_top1_best\.)")


def _apply(key: str, rules) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def _map_keys(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if source == "project":
            new = key.removeprefix("net.")
        elif source == "official":
            new = _apply(key, _OFFICIAL_IN)
        else:
            new = _apply(key, _MM_IN)
        if _IGNORED.match(new):
            continue
        if new in out:
            raise CheckpointError(f"two checkpoint keys map to {new!r} (one of them is {key!r})")
        out[new] = value
    return out


def to_peer_layout(state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """A VideoClassifier state dict in the official (``module.base_model...``) or MMAction2 layout."""
    rules = {"official": _OFFICIAL_OUT, "mmaction2": _MM_OUT}.get(source)
    if rules is None:
        raise ValueError(f"source must be 'official' or 'mmaction2', got {source!r}")
    return {_apply(k, rules): v for k, v in state_dict.items()}


# ------------------------------------------------------------------------------------------------
# Architecture read off the weights


def _infer_backbone(state: Mapping[str, torch.Tensor]) -> str:
    counts: dict[int, set[int]] = {}
    for key in state:
        m = re.match(r"^backbone\.layer(\d)\.(\d+)\.conv1\.weight$", key)
        if m:
            counts.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    depths = tuple(len(counts.get(i, ())) for i in (1, 2, 3, 4))
    bottleneck = "backbone.layer1.0.conv3.weight" in state
    name = (BOTTLENECK_DEPTHS if bottleneck else BASIC_DEPTHS).get(depths)
    if name is None:
        kind = "bottleneck" if bottleneck else "basic"
        raise CheckpointError(f"unsupported ResNet: blocks per stage {depths} ({kind}); supported: ResNet-18/34/50/101")
    conv2 = state["backbone.layer1.0.conv2.weight"]
    if name == "resnet50" and conv2.shape[1] * 32 == conv2.shape[0]:
        name = "resnext50_32x4d"  # grouped 3x3 convs, 32 groups
    return name


def _infer_temporal(state: Mapping[str, torch.Tensor]) -> tuple[dict, dict, list[str], int | None]:
    """(model.temporal, model.tam, stages with a TAM, T) for TAM checkpoints; C2D when there is no temporal key."""
    g0 = sorted(k for k in state if k.endswith(".temporal.G.net.0.weight"))
    if not g0:
        if any(".temporal." in k for k in state):
            raise CheckpointError("only TAM checkpoints can be converted (found temporal keys that are not TAM's G/L)")
        return {"name": "c2d"}, {}, [], None
    first = g0[0].removesuffix("G.net.0.weight")
    hidden, t = state[first + "G.net.0.weight"].shape
    k = state[first + "G.net.3.weight"].shape[0]
    l0 = state[first + "L.net.0.weight"]  # (C/beta, C, local kernel)
    tam = {"alpha": hidden // t, "beta": l0.shape[1] // l0.shape[0], "kernel_size": k}
    temporal = {"name": "tam"}
    if l0.shape[-1] != k:  # MMAction2's K=5 models keep a 3-tap local conv
        temporal["local_kernel_size"] = l0.shape[-1]
    stages = sorted({STAGE_OF_LAYER[re.search(r"\.(layer\d)\.", key).group(1)] for key in g0})
    return temporal, tam, stages, t


def _check_against(model_state: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str,
                   original: Mapping[str, str]) -> None:
    unplaced = [original.get(k, k) for k in state if k not in model_state]
    missing = [k for k in model_state if k not in state]
    shapes = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in model_state.items()
              if k in state and state[k].shape != v.shape]
    if not (unplaced or missing or shapes):
        return
    lines = [f"the {source} checkpoint does not fit the model read off its weights:"]
    if unplaced:
        lines.append(f"  {len(unplaced)} checkpoint keys have no place: {unplaced[:12]}")
    if missing:
        lines.append(f"  {len(missing)} model keys are not in the checkpoint: {missing[:12]}")
    for k, got, want in shapes[:12]:
        hint = ""
        if k.endswith("G.net.0.weight"):
            hint = f" (TAM's global branch is (alpha*T, T): this checkpoint is T={got[1]})"
        elif k.startswith("fc."):
            hint = f" (the checkpoint has {got[0]} classes: Kinetics-400 has 400, Something-Something 174)"
        lines.append(f"  {k}: checkpoint {got} vs model {want}{hint}")
    if len(shapes) > 12:
        lines.append(f"  ... and {len(shapes) - 12} more shape mismatches")
    raise CheckpointError("\n".join(lines))


def convert(
    src: str | os.PathLike | Mapping,
    source: str = "auto",
    num_frames: int | None = None,
    num_classes: int | None = None,
) -> Converted:
    """Map a peer (or project) checkpoint onto the project's VideoClassifier and check every key and shape.

    ``num_frames``/``num_classes``: what you expect; a checkpoint that disagrees is an error that says
    what it holds (None = take it from the weights).
    """
    obj = read_checkpoint(src) if isinstance(src, (str, os.PathLike)) else dict(src)  # a file or a hub folder
    state, extra = _split_container(obj)
    if source == "auto":
        source = detect_source(state)
    elif source not in SOURCES:
        raise CheckpointError(f"source must be auto or one of {SOURCES}, got {source!r}")
    mapped = _map_keys(state, source)
    original = {}
    if source != "project":
        rules = _OFFICIAL_IN if source == "official" else _MM_IN
        original = {_apply(k, rules): k for k in state}
    if "fc.weight" not in mapped:
        expected = {"official": "module.new_fc.weight", "mmaction2": "cls_head.fc_cls.weight"}.get(source, "fc.weight")
        raise CheckpointError(f"no classifier weights found in the {source} checkpoint (expected {expected})")

    hparams = extra.get("hyper_parameters") if source == "project" else None
    if hparams:  # a project checkpoint says what it is; nothing to guess
        kwargs = net_kwargs(hparams, source_of(src) if isinstance(src, (str, os.PathLike)) else "the checkpoint")
        t = kwargs["num_frames"]
    else:
        temporal, tam, stages, t = _infer_temporal(mapped)
        kwargs = {"backbone": _infer_backbone(mapped), "temporal": temporal, "tam": tam,
                  "num_classes": int(mapped["fc.weight"].shape[0]), "num_frames": t or num_frames or 8,
                  "position": "b", "stages": stages or ["res2", "res3", "res4", "res5"]}
    if num_frames is not None and t is not None:
        check_clip_length(num_frames, t, what=f"--num-frames {num_frames}", fix=f"convert with --num-frames {t} "
                          f"(the checkpoint's TAM global branch has {t} inputs)", error=CheckpointError)
    n_cls = int(mapped["fc.weight"].shape[0])
    if num_classes is not None and num_classes != n_cls:
        raise CheckpointError(
            f"the checkpoint's classifier has {n_cls} classes but {num_classes} were given "
            f"(Kinetics-400 has 400, Something-Something V1/V2 174): give the class file of its dataset"
        )
    model = create_video_model(**kwargs)
    _check_against(model.state_dict(), mapped, source, original)
    path = str(src) if isinstance(src, (str, os.PathLike)) else ""
    return Converted(mapped, source, kwargs, extra, path)


def convert_checkpoint(src: str | os.PathLike | Mapping, source: str = "auto") -> dict[str, torch.Tensor]:
    """A peer's (or this project's) checkpoint as a state dict for ``create_video_model``'s VideoClassifier."""
    return convert(src, source).state_dict


def load_init_weights(net: torch.nn.Module, path: str | os.PathLike,
                      class_names: list[str] | None = None) -> list[str]:
    """``model.init_from``: every weight of a project, converted or peer checkpoint into ``net``.

    Fine-tuning: a checkpoint of other classes (by name; by count when it carries none) leaves the
    classifier at its fresh initialisation, the same classes in another order are reordered; any other
    difference is an error. Returns the keys that were not loaded.
    """
    try:
        conv = convert(path)
    except CheckpointError as e:
        raise CheckpointError(f"model.init_from={path}: {e}") from None
    conv.key = "model.init_from"
    own, state = net.state_dict(), dict(conv.state_dict)
    # only TAM's global branch depends on T: a TSM, I3D or C2D checkpoint fine-tunes at any clip length
    t_dependent = any(".temporal.G." in k for k in state)
    match = check_fits(conv, num_frames=net.num_frames if t_dependent else conv.num_frames,
                       class_names=class_names, num_classes=net.num_classes, use="init_from")
    skipped = ["fc.weight", "fc.bias"] if match.restart else []
    for k in skipped:
        state.pop(k, None)
    unexpected = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and k not in skipped]
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if unexpected or missing or shapes:
        arch = {k: conv.model_kwargs.get(k) for k in ("backbone", "temporal", "tam", "position", "stages")}
        raise CheckpointError(
            f"model.init_from={path} does not fit model.* (the checkpoint is {arch}): "
            f"unexpected {unexpected[:8]}, missing {missing[:8]}, shapes {shapes[:8]}; set the model config "
            f"to the checkpoint's architecture (e.g. model.backbone={arch['backbone']})"
        )
    net.load_state_dict(state, strict=not skipped)
    if match.order is not None:
        net.reorder_classes(match.order)
    log.info("model.init_from: loaded %d tensors from %s (%s layout)", len(state), path, conv.source)
    return skipped
