"""The registry: one ``TemporalSpec`` per temporal module; everything else (the config check, the model
builder, the LightningModule's sweep keys, the complexity table, the report's row names) is derived from it.
Adding a module = a file in this package with its factory + one entry here + conf/model/temporal/<name>.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from ..backbones import VIT_FAMILIES, backbone_family
from .aim import aim
from .atm import ATM
from .baselines import NonLocalBlock, TEIModule, TemporalAvgPool, TemporalConv, TemporalShift
from .gst import GSTConv
from .st_adapter import STAdapter
from .tada import tada
from .tam import TAM, tam_global_only, tam_global_se, tam_local_only, tanet_r
from .tea import TEAConv
from .tokshift import TokenShift

PLACEMENTS = ("in_block", "after_block", "replace_conv", "replace_block", "inflate", "none")
VIT_ONLY = ("replace_block",)  # placements defined on ViT blocks only


@dataclass(frozen=True)
class Reported:
    """A module's own paper: the numbers it reports, for the complexity table beside ours.

    ``gflops`` is per view (one clip of ``frames`` x ``size``^2) as that paper counts it; ``results`` holds
    (dataset, top-1, top-5 or None) for the paper's ``backbone`` at ``frames`` frames; ``trained_mparams`` the
    parameters it trains (frozen-backbone methods); ``note`` says where the numbers come from and how its
    counting differs from ours, if it does.
    """

    source: str  # paper (and table / file) the numbers come from
    gflops: float | None
    mparams: float | None
    results: tuple[tuple[str, float, float | None], ...] = ()
    frames: int = 8
    size: int = 224  # input side of the paper's GFLOPs
    note: str = ""
    backbone: str = "resnet50"
    trained_mparams: float | None = None


@dataclass(frozen=True)
class TemporalSpec:
    """How a temporal module enters a network and where it stands in the paper's Table 2 (or its own paper)."""

    name: str  # the conf/model/temporal/<name>.yaml option
    # in_block / after_block: factory(channels, num_frames, **kwargs); replace_conv: factory(conv, num_frames,
    # **kwargs) with the block's 3x3 nn.Conv2d; None: no module (C2D, I3D's inflation)
    factory: Callable[..., nn.Module] | None
    # in_block (positions a-d; on a ViT its positions) | after_block (NL) | replace_conv (the 3x3 conv of every
    # ResNet block of the chosen stages, insertion.replace_convs) | replace_block (a ViT block rewritten:
    # factory(block, num_frames, **kwargs)) | inflate (I3D) | none (C2D)
    placement: str
    tam_keys: bool = False  # takes the paper's sweep keys model.tam.{alpha, beta, kernel_size}
    position: str = "b"  # its place in a block when model.position is null (in_block only)
    # its place(s) in a ViT block when model.position is null (in_block modules work on ViTs). The frame-batch
    # modules of the paper: the attention branch's input (patch tokens), the residual stream untouched, as
    # position a of a ResNet block (TSM's place); TAM there is not the identity at step 0 (a gated temporal
    # average of every patch token's neighbours): the image model changes, as on ResNets.
    vit_position: tuple[str, ...] = ("attn_branch",)
    vit_blocks: tuple[int, ...] | None = None  # its ViT blocks when model.blocks is null (None: every block)
    temporal_embedding: bool = False  # on a ViT, also a learned (1, T, C) embedding before the pre-norm (AIM)
    cnn: bool = True  # defined on the CNN backbones (ResNet, MobileNet, ...)
    at_init: str = ""  # what the patched network is at step 0, where the module's paper or ours says
    paper_row: str = ""  # its row name: in Table 2, or (with `reported`) in the complexity table
    paper: tuple[float, float, float, float] | None = None  # Table 2: GFLOPs, Mparams, top-1, top-5
    reported: Reported | None = None  # a module after TAM: its own paper's numbers

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"{self.name}: placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if (self.factory is None) != (self.placement in ("inflate", "none")):
            raise ValueError(f"{self.name}: a factory is needed exactly when a module is placed")
        if self.placement in VIT_ONLY and self.cnn:
            raise ValueError(f"{self.name}: placement {self.placement} exists on ViT blocks only (cnn=False)")
        if self.reported is not None and (self.paper is not None or not self.paper_row):
            raise ValueError(f"{self.name}: `reported` is for modules outside Table 2, with a paper_row to show")

    @property
    def resnet_row(self) -> bool:
        """A row of the ResNet comparison (Table 2's sweep): numbers of Table 2, or of its own paper on a CNN.
        Modules whose papers report ViT numbers (ST-Adapter, AIM, TokShift, ATM) have their own rows."""
        if self.paper is not None:
            return True
        return (self.reported is not None and self.cnn
                and backbone_family(self.reported.backbone) not in VIT_FAMILIES)


TEMPORAL: dict[str, TemporalSpec] = {s.name: s for s in (
    TemporalSpec("c2d", None, "none", paper_row="C2D", paper=(42.95, 24.33, 70.2, 88.9)),
    TemporalSpec("c2d_pool", TemporalAvgPool, "in_block", paper_row="C2D-Pool", paper=(42.95, 24.33, 73.1, 90.6)),
    TemporalSpec("c2d_tconv", TemporalConv, "in_block", paper_row="C2D-TConv", paper=(53.02, 28.10, 73.3, 90.7)),
    # TSM's own place: the residual branch's input
    TemporalSpec("tsm", TemporalShift, "in_block", position="a", paper_row="TSM", paper=(42.95, 24.33, 74.1, 91.2)),
    TemporalSpec("teinet", TEIModule, "in_block", paper_row="TEINet", paper=(43.01, 25.11, 74.9, 91.8)),
    TemporalSpec("i3d", None, "inflate", paper_row="I3D3x1x1", paper=(62.55, 32.99, 74.3, 91.6)),
    TemporalSpec("nl", NonLocalBlock, "after_block", paper_row="NL C2D", paper=(64.49, 31.69, 74.4, 91.5)),
    TemporalSpec("tam_global", tam_global_only, "in_block", tam_keys=True, paper_row="Global branch",
                 paper=(43.00, 24.33, 74.9, 91.7)),
    TemporalSpec("tam_local", tam_local_only, "in_block", tam_keys=True, paper_row="Local branch",
                 paper=(43.00, 25.59, 73.3, 90.7)),
    TemporalSpec("tam_global_se", tam_global_se, "in_block", tam_keys=True, paper_row="Global branch + SE",
                 paper=(43.02, 24.65, 75.4, 92.0)),
    TemporalSpec("tanet_r", tanet_r, "in_block", tam_keys=True, paper_row="TANet-R", paper=(43.02, 25.59, 76.0, 92.2)),
    TemporalSpec("tam", TAM, "in_block", tam_keys=True, paper_row="TANet", paper=(43.02, 25.59, 76.1, 92.3),
                 at_init="not the image model, on ResNets and on ViTs: Y = G(X) (*) (L(X) . X) with random G and L "
                         "(a gated temporal aggregation of each position's neighbour frames). On a ViT (TAM on "
                         "tokens) it sits at attn_branch by default: the patch tokens entering the attention branch "
                         "are TAM's output, the class token and the residual stream are untouched, so each patched "
                         "block is x + attn(norm1([cls, TAM(patches)])) + mlp(...) from step 0"),
    # modules after TAM, with their own papers' numbers (not in Table 2)
    TemporalSpec("tada", tada, "replace_conv", paper_row="TAda2D", reported=Reported(
        "Huang et al., ICLR 2022 (TAda2D R50, K400 table); official README (alibaba-mmai-research/TAdaConv)",
        gflops=43.0, mparams=None, results=(("K400", 76.7, 92.6), ("SSv2", 64.0, 88.0)), size=256,
        note="43 GFLOPs is per 8x256x256 view (the official test crop, TEST_CROP_SIZE 256; at 224 a ResNet-50 "
             "is 33 GFLOPs alone); no parameter count in the sources read (official README and configs)")),
    TemporalSpec("tea", TEAConv, "replace_conv", paper_row="TEA", reported=Reported(
        "Li et al., CVPR 2020 (TEA R50, SSv1 table, 1 clip, centre crop); official code "
        "Phoenix1327/tea-action-recognition", gflops=35.0, mparams=None, results=(("SSv1", 48.9, None),),
        note="the paper's network is Res2Net-50 26w4s (1x1 convs 104/208/416/832 wide, fragments 26-208): that "
             "layout counts 34.7G here (tests/models/test_tea_gst.py builds it); on the ResNet-50 each fragment is "
             "1/4 of the ResNet's own width, so its 3x3 convs cost 3/16 of the original ones: 21.1G")),
    TemporalSpec("gst", GSTConv, "replace_conv", paper_row="GST", reported=Reported(
        "Luo & Yuille, ICCV 2019 (GST R50, alpha=4 beta=2, SSv1 table); official README (chenxuluo/GST-video)",
        gflops=29.5, mparams=21.0, results=(("SSv1", 47.0, None), ("SSv2", 61.6, None)),
        note="the paper counts SSv1's 174 classes: at this table's 400 the classifier has 0.46M more parameters "
             "(--classes 174: 21.04M)")),
    # modules for frozen image ViTs (CLIP ViT-B/16), with their own papers' numbers
    TemporalSpec("st_adapter", STAdapter, "in_block", cnn=False, vit_position=("before_attn",),
                 at_init="the image model (the depthwise conv and both biases start at zero)", paper_row="ST-Adapter",
                 reported=Reported(
        "Pan et al., NeurIPS 2022 (ST-Adapter ViT-B/16 CLIP, K400, 8 frames x 3 views); official code "
        "linziyi96/st-adapter", gflops=455 / 3, mparams=None, results=(("K400", 82.0, None),),
        backbone="vit_base_patch16_clip_224.openai", trained_mparams=7.0,
        note="455 GFLOPs for 3 views in the paper: 151.7 per view; the paper places the adapter before the "
             "attention (default here, model.position=before_attn); the official K400 script "
             "(adapter12x384) puts it before the MLP, SSv2's (24x384) before both: "
             "model.position=[before_attn,before_mlp]")),
    TemporalSpec("tokshift", TokenShift, "in_block", cnn=False, vit_position=("before_attn", "before_mlp"),
                 at_init="not the image model: the shift has no parameters", paper_row="TokShift", reported=Reported(
        "Zhang et al., ACM MM 2021 (TokShift ViT-B/16 ImageNet-21k, K400, 8 frames); official code "
        "VideoNetworks/TokShift-Transformer (k400_tokshift_div4_8x32_base_224)", gflops=None, mparams=None,
        results=(("K400", 77.28, None),), backbone="vit_base_patch16_224.augreg_in21k", trained_mparams=None,
        note="zero parameters and no multiply-adds of its own: the counts are those of the ViT-B/16; trained "
             "end to end in the paper (no frozen backbone)")),
    TemporalSpec("aim", aim, "replace_block", cnn=False, temporal_embedding=True, paper_row="AIM",
                 at_init="the image model (each adapter's last linear and the temporal embedding start at zero)",
                 reported=Reported(
        "Yang et al., ICLR 2023 (AIM ViT-B/16 CLIP, K400, 8 frames x 3 views); official code "
        "taoyang1122/adapt-image-models", gflops=606 / 3, mparams=97.0, results=(("K400", 83.9, 96.3),),
        backbone="vit_base_patch16_clip_224.openai", trained_mparams=11.0,
        note="606 GFLOPs for 3 views in the paper: 202 per view (the temporal attention reuses the block's "
             "attention over T, which the paper counts)")),
    TemporalSpec("atm", ATM, "in_block", vit_position=("before_attn",), vit_blocks=(7,), paper_row="ATM",
                 at_init="relu(x): the image model at ResNet positions a and b (their inputs are ReLU outputs); on a "
                         "ViT the patch tokens entering the block are clipped at 0 (official code alike)",
                 reported=Reported(
        "Wu et al., ICCV 2023 (ATM); official code whwu95/ATM (modules/ATM.py, clip/model.py) and README",
        gflops=None, mparams=None, results=(("K400", 89.4, 98.3), ("SSv1", 65.6, 88.6), ("SSv2", 74.6, 94.4)),
        backbone="vit_large_patch14_clip_224",
        note="the results are the paper's best models as its README and abstract give them (EVA02-CLIP ViT-L/14, "
             "336x336 input for K400; timm's CLIP ViT-L/14 stands in for the backbone here); the per-backbone "
             "tables (ViT-B/16, ResNet-50) were not read, so no GFLOPs are "
             "given. Official placement: one ATM (mul then sub) before the attention of block 7 of a 12-block "
             "ViT (block 14 of 24), patch tokens only, the whole CLIP fine-tuned (model.blocks=[7]). The official "
             "code has no CNN placement: on ResNets it goes where TAM goes (position b, model.stages)")),
)}
# name -> factory(channels, num_frames, **kwargs): the modules placed on a feature map (in a block or after it)
# (frame batches (N*T, C, H, W); the token modules are apart: TOKEN_MODULES)
TEMPORAL_MODULES: dict[str, Callable[..., nn.Module]] = {
    n: s.factory for n, s in TEMPORAL.items()
    if s.placement in ("in_block", "after_block") and not getattr(s.factory, "takes_tokens", False)}
# name -> factory(channels, num_frames, **kwargs): the in-block modules of ViT token sequences (N*T, L, C)
TOKEN_MODULES: dict[str, Callable[..., nn.Module]] = {
    n: s.factory for n, s in TEMPORAL.items() if getattr(s.factory, "takes_tokens", False)}
# name -> factory(conv, num_frames, **kwargs): the modules that replace a block's 3x3 conv
CONV_MODULES: dict[str, Callable[..., nn.Module]] = {
    n: s.factory for n, s in TEMPORAL.items() if s.placement == "replace_conv"}
# name -> factory(block, num_frames, **kwargs): the modules that rewrite a ViT block
BLOCK_MODULES: dict[str, Callable[..., nn.Module]] = {
    n: s.factory for n, s in TEMPORAL.items() if s.placement == "replace_block"}
TAM_FAMILY = tuple(name for name, spec in TEMPORAL.items() if spec.tam_keys)  # the modules that take model.tam.*


def temporal_spec(name: str) -> TemporalSpec:
    if name not in TEMPORAL:
        raise ValueError(f"unknown temporal module {name!r}; choose one of {sorted(TEMPORAL)}")
    return TEMPORAL[name]


def _build(name: str, placements: tuple[str, ...], first, num_frames: int, kwargs: dict) -> nn.Module:
    spec = temporal_spec(name)
    if spec.factory is None:
        raise ValueError(f"{name!r} is not a module to place (placement {spec.placement})")
    if spec.placement not in placements:
        other = {"replace_conv": "create_conv_temporal(name, conv, ...)",
                 "replace_block": "create_block_temporal(name, block, ...)"}.get(
            spec.placement, "create_temporal(name, channels, ...)")
        raise ValueError(f"{name!r} has placement {spec.placement}: build it with {other}")
    try:
        return spec.factory(first, num_frames, **kwargs)
    except TypeError as e:  # an option the module does not take: say which module and which option
        raise ValueError(f"temporal module {name!r}: {e}") from None


def create_temporal(name: str, channels: int, num_frames: int, **kwargs) -> nn.Module:
    """A module placed on a (N*T, channels, H, W) feature map (placements in_block, after_block)."""
    return _build(name, ("in_block", "after_block"), channels, num_frames, kwargs)


def create_conv_temporal(name: str, conv: nn.Conv2d, num_frames: int, **kwargs) -> nn.Module:
    """A module that replaces ``conv`` (placement replace_conv): same input and output shapes as the conv."""
    return _build(name, ("replace_conv",), conv, num_frames, kwargs)


def create_block_temporal(name: str, block: nn.Module, num_frames: int, **kwargs) -> nn.Module:
    """A module that rewrites a ViT block (placement replace_block)."""
    return _build(name, ("replace_block",), block, num_frames, kwargs)
