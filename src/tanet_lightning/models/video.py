"""Video classifier: a patched 2-D backbone per frame -> dropout -> fc -> mean of the T frame scores."""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from functools import partial

import torch
import torch.nn as nn

from ..base.errors import CheckpointError
from .backbones import ARCH_KWARGS, STAGE_NAMES, VIT_FAMILIES, backbone_family, create_backbone
from .fit import check_clip_length
from .hub import HubMixin, plain
from .insertion import (
    POSITIONS,
    inflate_first_convs,
    insert_after_blocks,
    insert_temporal,
    insert_temporal_embedding,
    insert_vit,
    replace_convs,
    replace_vit_blocks,
)
from .temporal import TemporalSpec, create_block_temporal, create_conv_temporal, create_temporal, temporal_spec

# The paper's non-local placement: every other block of res3 and res4 = res3 {0, 2}, res4 {0, 2, 4} on
# ResNet-50 (the indices of the TAM/TSM code), 5 blocks in all.
NL_BLOCKS = {"res3": "every_other", "res4": "every_other"}


class VideoClassifier(HubMixin, nn.Module):
    """Input (N, T, 3, H, W) float; output (N, num_classes) logits averaged over the T frames.

    There is no temporal downsampling anywhere, so the clip length is fixed at construction: a clip of
    another length is an error here, where it can still be told apart from a batch of shorter clips.
    ``create_video_model`` records its arguments (``model_args``) and what the network is
    (``architecture``), so ``save_pretrained`` / ``from_pretrained`` (models/hub.py) can rebuild it.
    """

    model_args: dict | None = None  # create_video_model's arguments (JSON types), pretrained weights aside
    architecture: dict | None = None  # the temporal module's effective options and place, for the model card
    image_parameters: tuple[str, ...] = ()  # names of the image backbone's own parameters (the rest are new)

    def __init__(self, backbone: nn.Module, num_classes: int, num_frames: int, dropout: float = 0.5,
                 init_std: float = 0.001):
        super().__init__()
        if num_classes <= 0 or num_frames <= 0:
            raise ValueError(f"num_classes and num_frames must be positive, got {num_classes}, {num_frames}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.backbone, self.num_frames, self.num_classes = backbone, num_frames, num_classes
        self.channels_last = False  # set with the weights' memory format (training config switch)
        self.head_drop = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.num_features, num_classes)
        nn.init.normal_(self.fc.weight, std=init_std)  # the reference heads' init
        nn.init.zeros_(self.fc.bias)

    def check_clip(self, video: torch.Tensor) -> None:
        if video.dim() != 5:
            raise ValueError(f"expected a clip batch (N, T, 3, H, W), got shape {tuple(video.shape)}")
        check_clip_length(video.shape[1], self.num_frames, what=f"a clip batch {tuple(video.shape)}",
                          fix=f"set data.num_frames={self.num_frames}")

    def reorder_classes(self, order: list[int]) -> None:
        """Classifier row ``order[i]`` becomes row i (a checkpoint's classes onto the data's order)."""
        index = torch.as_tensor(order, device=self.fc.weight.device)
        with torch.no_grad():
            self.fc.weight.copy_(self.fc.weight[index])
            self.fc.bias.copy_(self.fc.bias[index])

    def frame_logits(self, video: torch.Tensor) -> torch.Tensor:
        """(N, T, num_classes): one score per frame, before the temporal average."""
        self.check_clip(video)
        n, t = video.shape[:2]
        frames = video.flatten(0, 1)
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        feats = self.backbone.forward_features(frames)
        # CNN maps (B, C, h, w): the spatial mean; ViT tokens (B, L, C): the backbone's own pooling (the class
        # token of CLIP / ImageNet ViTs, through its final norm)
        feats = self.backbone.forward_head(feats, pre_logits=True) if feats.dim() == 3 else feats.mean(dim=(-2, -1))
        return self.fc(self.head_drop(feats)).view(n, t, -1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.frame_logits(video).mean(dim=1)

    def frozen_modules(self) -> list[nn.Module]:
        """The backbone's modules made of image parameters only (under ``freeze_backbone``: no grad, and their
        norm statistics kept as loaded: a module in this list runs in eval mode)."""
        image = set(self.image_parameters)
        return [m for name, m in self.named_modules() if name.startswith("backbone")
                and (params := [f"{name}.{p}" for p, _ in m.named_parameters(recurse=True)])
                and all(p in image for p in params)]

    def freeze_backbone(self) -> None:
        """Every image weight frozen; the temporal modules / adapters (parameters the image model did not have)
        and the classifier train."""
        image = set(self.image_parameters)
        for name, p in self.named_parameters():
            if name in image:
                p.requires_grad_(False)

    @classmethod
    def from_model_args(cls, args: Mapping, where: str = "model_args") -> VideoClassifier:
        """The network of recorded ``model_args`` read from a file that ``where`` names (every weight to be
        loaded by the caller)."""
        return create_video_model(**model_args_from_file(args, where))


def temporal_options(temporal: str | Mapping | None = None,
                     tam: Mapping | None = None) -> tuple[str, dict, dict | None]:
    """(name, module options, non-local block indices) of the ``model.temporal`` node and ``model.tam``.

    The one merge of the two: ``model.tam.{alpha,beta,kernel_size}`` are the paper's sweep keys and reach
    only the modules whose spec takes them (``tam_keys``); a key in ``model.temporal`` wins.
    """
    options = {"name": temporal} if isinstance(temporal, str) else dict(temporal or {"name": "tam"})
    name = options.pop("name", "tam")
    nl_blocks = options.pop("blocks", None)
    if temporal_spec(name).tam_keys:
        options = {**(tam or {}), **options}
    return name, options, nl_blocks


def create_video_model(
    backbone: str = "resnet50",
    temporal: str | Mapping = "tam",
    num_classes: int = 400,
    num_frames: int = 8,
    *,
    tam: Mapping | None = None,
    position: str | Sequence[str] | None = None,
    stages: Sequence[str] = STAGE_NAMES,
    blocks: Sequence[int] | None = None,
    dropout: float = 0.5,
    pretrained: bool = False,
    pretrained_path: str | None = None,
    backbone_kwargs: Mapping | None = None,
) -> VideoClassifier:
    """Build any model of the paper's Tables 2, 3 and 5 by name: the ``model.*`` keys of the configs.

    ``temporal`` is a name of the registry ``temporal.TEMPORAL`` or the ``model.temporal`` node (its
    ``name`` plus module options; ``blocks`` for non-local placement); ``tam`` holds the paper's TAM
    sweep keys, merged in by ``temporal_options``. ``position=None`` puts an in-block module at its own
    place (TAM: b, TSM: a); modules that replace the 3x3 conv (TAda2D, TEA, GST) have none. On a timm ViT
    ``position`` is one or more ViT positions (``insertion.VIT_POSITIONS``; null: the module's ``vit_position``)
    and ``blocks`` the block indices (null: every block); ``stages`` is for CNNs. ImageNet weights are loaded
    into the plain backbone before it is patched, so temporal modules keep their own initialisation; the
    names of the image weights are kept (``image_parameters``: what ``freeze_backbone`` freezes).
    """
    family = backbone_family(backbone)  # unknown names fail here, before any weights are loaded
    name, kwargs, nl_blocks = temporal_options(temporal, tam)
    spec = temporal_spec(name)
    vit = family in VIT_FAMILIES
    positions = _positions(name, spec, position, blocks, vit)
    vit_blocks = (blocks if blocks is not None else spec.vit_blocks) if vit else None
    net = create_backbone(backbone, pretrained=pretrained, pretrained_path=pretrained_path, **(backbone_kwargs or {}))
    image_parameters = [n for n, _ in net.named_parameters()]
    stages = list(stages)
    if vit and spec.placement == "in_block":
        insert_vit(net, partial(create_temporal, name, num_frames=num_frames, **kwargs), positions, vit_blocks)
    elif vit and spec.placement == "replace_block":
        replace_vit_blocks(net, partial(create_block_temporal, name, num_frames=num_frames, **kwargs), vit_blocks)
    elif spec.placement == "none":
        if kwargs:
            raise ValueError(f"{name} has no temporal module; unexpected options {sorted(kwargs)}")
    elif spec.placement == "inflate":
        inflate_first_convs(net, family, num_frames, stages)
    elif spec.placement == "after_block":
        factory = partial(create_temporal, name, num_frames=num_frames, **kwargs)
        insert_after_blocks(net, family, factory, dict(nl_blocks or NL_BLOCKS))
    elif spec.placement == "replace_conv":
        replace_convs(net, family, partial(create_conv_temporal, name, num_frames=num_frames, **kwargs), stages)
    else:
        factory = partial(create_temporal, name, num_frames=num_frames, **kwargs)
        insert_temporal(net, family, factory, position or spec.position, stages)
    if vit and spec.temporal_embedding:
        insert_temporal_embedding(net, num_frames)
    model = VideoClassifier(net, num_classes, num_frames, dropout)
    model.image_parameters = tuple(f"backbone.{n}" for n in image_parameters)
    model.model_args = plain({"backbone": backbone, "temporal": temporal, "num_classes": num_classes,
                              "num_frames": num_frames, "tam": tam, "position": position, "stages": stages,
                              "blocks": blocks, "dropout": dropout, "backbone_kwargs": backbone_kwargs})
    model.architecture = _architecture(backbone, spec, kwargs, positions if vit else position, stages, nl_blocks,
                                       vit_blocks)
    return model


NET_ARGS = inspect.signature(create_video_model).parameters  # which model.* keys build the network
# a backbone as a file may name it: a timm architecture, a pretrained tag after the dot; not a source
# (hf-hub:, local-dir:), a path or a URL
BACKBONE_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?")


def model_args_from_file(args: Mapping, where: str) -> dict:
    """``create_video_model``'s arguments among ``args`` read from a file: a checkpoint's flat
    hyper-parameters or a save_pretrained config.json's ``model``. ``where`` names the setting and file.

    The one place a file becomes network arguments. Such a file holds every weight and must not make
    anything else be opened or downloaded: ``pretrained`` and ``pretrained_path`` say how it was trained and
    are not followed (False, None); ``backbone_kwargs`` may set only the architecture arguments of
    ``backbones.ARCH_KWARGS``, with the values they take; ``backbone`` is a plain timm name.
    """
    kwargs = {k: v for k, v in args.items() if k in NET_ARGS and k not in ("pretrained", "pretrained_path")}
    backbone = kwargs.get("backbone", NET_ARGS["backbone"].default)
    if not isinstance(backbone, str) or not BACKBONE_NAME.fullmatch(backbone):
        raise CheckpointError(f"{where} sets model.backbone={backbone!r}, refused: a checkpoint names its backbone "
                              "as timm does (resnet50, resnet50.tv_in1k), never a source, a path or a URL")
    extra = kwargs.get("backbone_kwargs") or {}
    if not isinstance(extra, Mapping):
        raise CheckpointError(f"{where} sets model.backbone_kwargs={extra!r}, refused: expected a mapping of "
                              f"architecture arguments ({', '.join(sorted(ARCH_KWARGS))})")
    for key, value in extra.items():
        check = ARCH_KWARGS.get(key)
        if check is None or not check(value):
            what = "a value it does not take" if check else "not an architecture argument"
            raise CheckpointError(
                f"{where} sets model.backbone_kwargs.{key}={value!r}, refused ({what}): a checkpoint or "
                f"config.json may set only the backbone's architecture ({', '.join(sorted(ARCH_KWARGS))}), "
                "never a file, a URL or a download to load. Remove the key from the file if you trust it; "
                "weights you choose yourself go to model.pretrained_path=FILE")
    return {**kwargs, "num_frames": kwargs.get("num_frames", NET_ARGS["num_frames"].default),
            "pretrained": False, "pretrained_path": None}


def _positions(name: str, spec: TemporalSpec, position, blocks, vit: bool) -> list[str]:
    """The ViT positions of an in-block module (empty on CNNs); a backbone the module is not defined on, a
    ViT position on a CNN or the reverse is an error naming the keys."""
    given = [position] if isinstance(position, str) else list(position) if position is not None else None
    supported = spec.placement in ("in_block", "replace_block", "none") if vit else spec.cnn
    if not supported:
        fix = "a CNN backbone (resnet50, ...)" if vit else "a timm ViT backbone (e.g. vit_base_patch16_clip_224.openai)"
        raise ValueError(f"model/temporal={name} is not defined on {'ViT' if vit else 'CNN'} backbones: use {fix}")
    if not vit:
        if blocks is not None:
            raise ValueError("model.blocks picks ViT blocks; on a CNN choose model.stages (set model.blocks=null)")
        if given is not None and (len(given) != 1 or given[0] not in POSITIONS):
            raise ValueError(f"model.position={position!r} is not a CNN block position: choose one of "
                             f"{list(POSITIONS)} (ViT positions such as before_attn need a ViT backbone)")
        return []
    if spec.placement != "in_block":
        if given is not None:
            raise ValueError(f"model/temporal={name} (placement {spec.placement}) takes no model.position")
        return []
    return given if given is not None else list(spec.vit_position)


def _architecture(backbone: str, spec: TemporalSpec, options: Mapping, position, stages: Sequence[str],
                  nl_blocks: Mapping | None, vit_blocks: Sequence[int] | None) -> dict:
    """The temporal module with its effective options (its own defaults filled in) and where it stands."""
    effective = {}
    if spec.factory is not None:
        effective = {p.name: p.default for p in inspect.signature(spec.factory).parameters.values()
                     if p.default is not inspect.Parameter.empty}
    arch = {"backbone": backbone, "temporal": spec.name, "options": {**effective, **options},
            "placement": spec.placement}
    if isinstance(position, list):  # a ViT
        arch.update(position=position, blocks=None if vit_blocks is None else list(vit_blocks))
    elif spec.placement == "in_block":
        arch.update(position=position or spec.position, stages=list(stages))
    elif spec.placement in ("inflate", "replace_conv"):
        arch["stages"] = list(stages)
    elif spec.placement == "after_block":
        arch["blocks"] = dict(nl_blocks or NL_BLOCKS)
    return plain(arch)
