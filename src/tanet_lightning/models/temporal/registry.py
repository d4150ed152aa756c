"""The registry: one ``TemporalSpec`` per temporal module; everything else (the config check, the model
builder, the LightningModule's sweep keys, the complexity table, the report's row names) is derived from it.
Adding a module = a file in this package with its factory + one entry here + conf/model/temporal/<name>.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from .baselines import NonLocalBlock, TEIModule, TemporalAvgPool, TemporalConv, TemporalShift
from .gst import GSTConv
from .tada import tada
from .tam import TAM, tam_global_only, tam_global_se, tam_local_only, tanet_r
from .tea import TEAConv

PLACEMENTS = ("in_block", "after_block", "replace_conv", "inflate", "none")


@dataclass(frozen=True)
class Reported:
    """A module's own paper: the numbers it reports, for the complexity table beside ours.

    ``gflops`` is per view (one clip of ``frames`` x ``size``^2) as that paper counts it; ``results`` holds
    (dataset, top-1, top-5 or None) for the ResNet-50 model at ``frames`` frames; ``note`` says where the
    numbers come from and how its counting differs from ours, if it does.
    """

    source: str  # paper (and table / file) the numbers come from
    gflops: float | None
    mparams: float | None
    results: tuple[tuple[str, float, float | None], ...] = ()
    frames: int = 8
    size: int = 224  # input side of the paper's GFLOPs
    note: str = ""


@dataclass(frozen=True)
class TemporalSpec:
    """How a temporal module enters a network and where it stands in the paper's Table 2 (or its own paper)."""

    name: str  # the conf/model/temporal/<name>.yaml option
    # in_block / after_block: factory(channels, num_frames, **kwargs); replace_conv: factory(conv, num_frames,
    # **kwargs) with the block's 3x3 nn.Conv2d; None: no module (C2D, I3D's inflation)
    factory: Callable[..., nn.Module] | None
    # in_block (positions a-d) | after_block (NL) | replace_conv (the 3x3 conv of every ResNet block of the
    # chosen stages, insertion.replace_convs) | inflate (I3D) | none (C2D)
    placement: str
    tam_keys: bool = False  # takes the paper's sweep keys model.tam.{alpha, beta, kernel_size}
    position: str = "b"  # its place in a block when model.position is null (in_block only)
    paper_row: str = ""  # its row name: in Table 2, or (with `reported`) in the complexity table
    paper: tuple[float, float, float, float] | None = None  # Table 2: GFLOPs, Mparams, top-1, top-5
    reported: Reported | None = None  # a module after TAM: its own paper's numbers

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"{self.name}: placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if (self.factory is None) != (self.placement in ("inflate", "none")):
            raise ValueError(f"{self.name}: a factory is needed exactly when a module is placed")
        if self.reported is not None and (self.paper is not None or not self.paper_row):
            raise ValueError(f"{self.name}: `reported` is for modules outside Table 2, with a paper_row to show")


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
    TemporalSpec("tam", TAM, "in_block", tam_keys=True, paper_row="TANet", paper=(43.02, 25.59, 76.1, 92.3)),
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
)}
# name -> factory(channels, num_frames, **kwargs): the modules placed on a feature map (in a block or after it)
TEMPORAL_MODULES: dict[str, Callable[..., nn.Module]] = {
    n: s.factory for n, s in TEMPORAL.items() if s.placement in ("in_block", "after_block")}
# name -> factory(conv, num_frames, **kwargs): the modules that replace a block's 3x3 conv
CONV_MODULES: dict[str, Callable[..., nn.Module]] = {
    n: s.factory for n, s in TEMPORAL.items() if s.placement == "replace_conv"}
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
        other = "create_conv_temporal(name, conv, ...)" if spec.placement == "replace_conv" else \
            "create_temporal(name, channels, ...)"
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
