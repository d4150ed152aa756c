"""Block-insertion utility: put a temporal module into the blocks of a 2-D backbone, in place.

Positions inside a residual block (paper supplementary Fig. 1, Table 5a):
    a  before the first conv (on the residual branch; the identity path is untouched, like TSM)
    b  after the first conv + BN + ReLU (TANet's default)
    c  after the second conv (+ BN + ReLU)
    d  after the last conv + BN, before the residual addition

A patched block keeps every original child under its original name and adds one child,
``temporal``, so ImageNet weights load into the patched model and checkpoints read naturally
(``layer1.0.conv1.weight``, ``layer1.0.temporal.G.net.0.weight``).

Modules that replace a ResNet block's 3x3 conv (TAda2D, TEA, GST) go in with ``replace_convs``: the
replacement owns the conv's weight under the conv's own name (``layer1.0.conv2.weight``).

timm VisionTransformer blocks (``x = x + attn(norm1(x)); x = x + mlp(norm2(x))``) have their own
positions (``VIT_POSITIONS``), one module per position, children ``temporal.<position>``
(``blocks.3.temporal.before_attn.fc1.weight``); ``model.blocks`` picks block indices (None: all):
    before_attn   the residual stream entering the attention sub-block: x <- m(x) (ST-Adapter, TokShift)
    attn_branch   the attention branch's input only: x + attn(norm1(m(x))), stream untouched (like a)
    before_mlp    the residual stream entering the MLP sub-block
    mlp_branch    the MLP branch's input only
    after_block   the block's output
A module sees the patch tokens as a frame batch ``(N*T, C, H', W')``, the class (prefix) tokens passed
by unchanged; a module with ``takes_tokens = True`` (TokShift) sees the whole ``(N*T, L, C)`` sequence.
Modules that rewrite a ViT block (AIM) go in with ``replace_vit_blocks``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from timm.models._efficientnet_blocks import InvertedResidual
from timm.models.inception_v3 import InceptionA, InceptionB, InceptionC, InceptionD, InceptionE
from timm.models.resnet import BasicBlock, Bottleneck
from timm.models.vision_transformer import Block as ViTBlock
from timm.models.vision_transformer import VisionTransformer
from torchvision.models.shufflenetv2 import InvertedResidual as ShuffleBlock
from torchvision.models.shufflenetv2 import channel_shuffle

from .backbones import STAGE_NAMES, STAGE_STRIDES, STAGE_TABLES
from .temporal import TemporalConv

POSITIONS = ("a", "b", "c", "d")
VIT_POSITIONS = ("before_attn", "attn_branch", "before_mlp", "mlp_branch", "after_block")
TemporalFactory = Callable[[int], nn.Module]  # channels -> module (num_frames already bound)


class TakenOverBlock(nn.Module):
    """A block that takes over every child of the original under its own name (``named_children``) and
    its plain attributes (flags such as ``has_skip``, absent parts such as ``se=None``). Subclasses re-write
    the block's forward; a test runs each against the original, so a timm change to a forward fails there."""

    def __init__(self, block: nn.Module):
        super().__init__()
        for name, child in block.named_children():
            self.add_module(name, child)
        for name, value in vars(block).items():
            if not name.startswith("_") and name != "training":
                setattr(self, name, value)


class PatchedBlock(TakenOverBlock):
    """A taken-over block plus one child, ``temporal``, at ``position`` (the test: ``nn.Identity()`` there
    gives the original block's output bit for bit)."""

    positions: tuple[str, ...] = POSITIONS

    def __init__(self, block: nn.Module, temporal: nn.Module, position: str):
        super().__init__(block)
        self.temporal, self.position = temporal, position


class TemporalBottleneck(PatchedBlock):
    """timm ``Bottleneck`` (ResNet-50/101, ResNeXt) with a temporal module at position a, b, c or d."""

    @staticmethod
    def channels(block: Bottleneck, position: str) -> int:
        convs = {"a": block.conv1.in_channels, "b": block.conv1.out_channels,
                 "c": block.conv2.out_channels, "d": block.conv3.out_channels}
        return convs[position]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut, p = x, self.position
        if p == "a":
            x = self.temporal(x)
        x = self.act1(self.bn1(self.conv1(x)))
        if p == "b":
            x = self.temporal(x)
        x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
        if p == "c":
            x = self.temporal(x)
        x = self.bn3(self.conv3(x))
        if p == "d":
            x = self.temporal(x)
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act3(x + shortcut)


class TemporalBasicBlock(PatchedBlock):
    """timm ``BasicBlock`` (ResNet-18/34). It has two convs, so "after the second conv" is position d."""

    positions = ("a", "b", "d")

    @staticmethod
    def channels(block: BasicBlock, position: str) -> int:
        return {"a": block.conv1.in_channels, "b": block.conv1.out_channels, "d": block.conv2.out_channels}[position]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut, p = x, self.position
        if p == "a":
            x = self.temporal(x)
        x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        if p == "b":
            x = self.temporal(x)
        x = self.bn2(self.conv2(x))
        if p == "d":
            x = self.temporal(x)
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act2(x + shortcut)


def _conv2_bn2(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """bn2(conv2(x)), plus the replacement's branch on the conv output where it has one (``norm_branch``)."""
    y = block.conv2(x)
    branch = block.conv2.norm_branch(y) if hasattr(block.conv2, "norm_branch") else None
    return block.bn2(y) if branch is None else block.bn2(y) + branch


class ConvReplacedBottleneck(TakenOverBlock):
    """timm ``Bottleneck`` whose ``conv2`` (the 3x3) is a replacement module (``replace_convs``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.aa(self.act2(self.drop_block(_conv2_bn2(self, x))))
        x = self.bn3(self.conv3(x))
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act3(x + shortcut)


class ConvReplacedBasicBlock(TakenOverBlock):
    """timm ``BasicBlock`` whose ``conv2`` (its second 3x3) is a replacement module (``replace_convs``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        x = _conv2_bn2(self, x)
        if self.se is not None:
            x = self.se(x)
        if self.drop_path is not None:
            x = self.drop_path(x)
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return self.act2(x + shortcut)


class TemporalInvertedResidual(PatchedBlock):
    """timm ``InvertedResidual`` (MobileNet V2): a/b/c/d around expand 1x1, depthwise 3x3, project 1x1."""

    def __init__(self, block: InvertedResidual, temporal: nn.Module, position: str):
        if block.conv_s2d is not None:
            raise ValueError("InvertedResidual blocks with space-to-depth are not supported")
        super().__init__(block, temporal, position)

    @staticmethod
    def channels(block: InvertedResidual, position: str) -> int:
        return {"a": block.conv_pw.in_channels, "b": block.conv_pw.out_channels,
                "c": block.conv_dw.out_channels, "d": block.conv_pwl.out_channels}[position]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut, p = x, self.position
        if p == "a":
            x = self.temporal(x)
        x = self.bn1(self.conv_pw(x))  # timm's BatchNormAct2d: BN + ReLU6
        if p == "b":
            x = self.temporal(x)
        x = self.se(self.aa(self.bn2(self.conv_dw(x))))
        if p == "c":
            x = self.temporal(x)
        x = self.bn3(self.conv_pwl(x))
        if p == "d":
            x = self.temporal(x)
        return self.drop_path(x) + shortcut if self.has_skip else x


class TemporalShuffleBlock(PatchedBlock):
    """torchvision ShuffleNet V2 unit (stride 1 only): a = input of the convolved half, b = after its 1x1."""

    positions = ("a", "b")

    def __init__(self, block: ShuffleBlock, temporal: nn.Module, position: str):
        if block.stride != 1:
            raise ValueError("only stride-1 ShuffleNet units take a temporal module")
        super().__init__(block, temporal, position)

    @staticmethod
    def channels(block: ShuffleBlock, position: str) -> int:
        conv = block.branch2[0]
        return conv.in_channels if position == "a" else conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        if self.position == "a":
            x2 = self.branch2(self.temporal(x2))
        else:
            x2 = self.branch2[3:](self.temporal(self.branch2[:3](x2)))
        return channel_shuffle(torch.cat((x1, x2), dim=1), 2)


def _temporal_pre_hook(module: nn.Module, args: tuple) -> tuple:
    return (module.temporal(args[0]), *args[1:])


def _temporal_post_hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return module.temporal(output)


def _first_conv(block: nn.Module) -> nn.Conv2d:
    return next(m for m in block.modules() if isinstance(m, nn.Conv2d))


def _out_channels(block: nn.Module) -> int:
    if isinstance(block, Bottleneck):
        return block.conv3.out_channels
    if isinstance(block, BasicBlock):
        return block.conv2.out_channels
    raise ValueError(f"after-block modules (non-local) are supported on ResNet blocks only, not {type(block).__name__}")


_WRAPPERS: dict[type, type] = {
    Bottleneck: TemporalBottleneck,
    BasicBlock: TemporalBasicBlock,
    InvertedResidual: TemporalInvertedResidual,
    ShuffleBlock: TemporalShuffleBlock,
}
# Inception units have parallel branches: only their common input (position a) is well defined.
_INPUT_ONLY = (InceptionA, InceptionB, InceptionC, InceptionD, InceptionE)


_BLOCKS = (*_WRAPPERS, *_INPUT_ONLY, TakenOverBlock)  # the units a temporal module can enter (or entered)
_CONV_WRAPPERS: dict[type, type] = {Bottleneck: ConvReplacedBottleneck, BasicBlock: ConvReplacedBasicBlock}
ConvFactory = Callable[[nn.Conv2d], nn.Module]  # the block's 3x3 conv -> its replacement (num_frames bound)


def blocks_by_stage(model: nn.Module, family: str) -> dict[str, list[tuple[str, nn.Module]]]:
    """(qualified name, block) of every block of each paper stage, in network order.

    timm backbones: a block belongs to the first stride whose ``feature_info`` module it lies inside
    or precedes (modules in definition order); blocks of the stride-2 stem belong to no stage.
    """
    if family in STAGE_TABLES:
        out = {stage: [] for stage in STAGE_NAMES}
        for stage, paths in STAGE_TABLES[family].items():
            for path in paths:
                m = model.get_submodule(path)
                out[stage] += ([(f"{path}.{n}", b) for n, b in m.named_children()]
                               if isinstance(m, nn.Sequential) else [(path, m)])
        return out
    names = [n for n, _ in model.named_modules()]
    ends = []  # (index of the last module inside the stage's ending module, stage)
    for info in model.feature_info:
        stage = next((s for s, r in STAGE_STRIDES.items() if r == info["reduction"]), None)
        last = max(i for i, n in enumerate(names) if n == info["module"] or n.startswith(info["module"] + "."))
        ends.append((last, stage))
    out = {stage: [] for stage in STAGE_NAMES}
    for i, (name, module) in enumerate(model.named_modules()):
        if isinstance(module, _BLOCKS):
            stage = next((s for last, s in ends if i <= last), None)
            if stage is not None:
                out[stage].append((name, module))
    return out


def stage_blocks(model: nn.Module, family: str, stages: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """(qualified name, block) for every block of the chosen paper stages, in network order."""
    unknown = [s for s in stages if s not in STAGE_NAMES]
    if unknown or not stages:
        raise ValueError(f"unknown stage(s) {unknown or stages}; choose a non-empty subset of {list(STAGE_NAMES)}")
    by_stage = blocks_by_stage(model, family)
    blocks = [b for stage in STAGE_NAMES if stage in stages for b in by_stage[stage]]
    if not blocks:
        raise ValueError(f"stages {list(stages)} hold no blocks in this {family} backbone; "
                         f"stages with blocks: {[s for s in STAGE_NAMES if by_stage[s]]}")
    return blocks


def _eligible(block: nn.Module) -> bool:
    return not (isinstance(block, ShuffleBlock) and block.stride != 1)


def insert_temporal(
    model: nn.Module,
    family: str,
    factory: TemporalFactory,
    position: str = "b",
    stages: Sequence[str] = STAGE_NAMES,
) -> list[str]:
    """Put ``factory(channels)`` at ``position`` of every block of ``stages``; return the patched names."""
    if position not in POSITIONS:
        raise ValueError(f"unknown position {position!r}; choose one of {list(POSITIONS)}")
    targets = [(n, b) for n, b in stage_blocks(model, family, stages) if _eligible(b)]
    for name, block in targets:  # validate everything before changing anything
        wrapper = _WRAPPERS.get(type(block))
        allowed = wrapper.positions if wrapper else ("a",) if isinstance(block, _INPUT_ONLY) else ()
        if position not in allowed:
            why = f"supported: {list(allowed)}" if allowed else "no temporal module can be placed in it"
            raise ValueError(f"position {position!r} is not defined for {type(block).__name__} ({name}); {why}")
    for name, block in targets:
        wrapper = _WRAPPERS.get(type(block))
        if wrapper is None:  # Inception unit: temporal module on the unit's input
            block.temporal = factory(_first_conv(block).in_channels)
            block.register_forward_pre_hook(_temporal_pre_hook)
        else:
            new = wrapper(block, factory(wrapper.channels(block, position)), position)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, new)
    return [n for n, _ in targets]


def insert_after_blocks(
    model: nn.Module, family: str, factory: TemporalFactory, blocks: dict[str, Sequence[int] | str]
) -> list[str]:
    """Put ``factory(out_channels)`` on the output of chosen blocks of each stage.

    Indices per stage, or "every_other" (blocks 0, 2, 4, ...): on ResNet-50 "every_other" in res3 and
    res4 is the paper's 5 non-local blocks (res3 {0, 2}, res4 {0, 2, 4}); on ResNet-18 it gives 2.
    """
    patched = []
    for stage, indices in blocks.items():
        stage_list = stage_blocks(model, family, [stage])
        if indices == "every_other":
            indices = range(0, len(stage_list), 2)
        elif isinstance(indices, str):
            raise ValueError(f"non-local blocks of {stage}: a list of indices or 'every_other', not {indices!r}")
        for i in indices:
            if not 0 <= i < len(stage_list):
                raise ValueError(f"{stage} has {len(stage_list)} blocks; block index {i} does not exist")
            name, block = stage_list[i]
            block.temporal = factory(_out_channels(block))
            block.register_forward_hook(_temporal_post_hook)
            patched.append(name)
    return patched


def replace_convs(model: nn.Module, family: str, factory: ConvFactory, stages: Sequence[str] = STAGE_NAMES
                  ) -> list[str]:
    """Replace the 3x3 conv (``conv2``) of every ResNet block of ``stages`` with ``factory(conv2)``.

    The replacement receives the original ``nn.Conv2d`` (it owns its weight, stride, dilation, groups) and
    maps the conv's input to an output of the conv's shape. A replacement with a branch that joins after
    the conv's BatchNorm (TAda2D's average pooling) has a method ``norm_branch(y)`` of the conv output ``y``:
    the block computes ``bn2(y) + norm_branch(y)`` (None: no branch). Basic blocks (ResNet-18/34) replace
    their second 3x3. Returns the names of the blocks changed.
    """
    if family != "resnet":
        raise ValueError("modules that replace the 3x3 conv of ResNet blocks (TAda2D, TEA, GST) need a ResNet "
                         f"backbone (resnet18/34/50/101, resnext50_32x4d); {family} is not supported")
    targets = stage_blocks(model, family, stages)
    for name, block in targets:  # validate everything before changing anything
        if type(block) not in _CONV_WRAPPERS:
            raise ValueError(f"{name} is a {type(block).__name__}, not a ResNet BasicBlock / Bottleneck whose "
                             "3x3 conv can be replaced")
    for name, block in targets:
        block.conv2 = factory(block.conv2)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, _CONV_WRAPPERS[type(block)](block))
    return [n for n, _ in targets]


def inflate_first_convs(model: nn.Module, family: str, num_frames: int, stages: Sequence[str]) -> list[str]:
    """I3D: the first conv of every block gets a temporal kernel of 3, inflated from its 2-D weights.

    In a bottleneck that is the paper's I3D 3x1x1 (the 1x1 becomes 3x1x1); ResNet-18/34 basic blocks
    start with a 3x3, which becomes 3x3x3 (our extension, for small CPU runs).
    """
    if family != "resnet":
        raise ValueError("I3D inflates the first conv of ResNet blocks; other backbones are not supported")
    names = []
    for name, block in stage_blocks(model, family, stages):
        block.conv1 = TemporalConv.from_conv2d(block.conv1, num_frames)
        names.append(name)
    return names


# ------------------------------------------------------------------------------------------------
# timm VisionTransformer blocks


def vit_blocks(model: nn.Module, blocks: Sequence[int] | None) -> list[tuple[str, nn.Module]]:
    """(qualified name, block) of the chosen block indices of a timm ViT (None: every block), in order."""
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"model.blocks / ViT positions need a timm VisionTransformer, not {type(model).__name__}")
    count = len(model.blocks)
    indices = range(count) if blocks is None else list(blocks)
    bad = [i for i in indices if not isinstance(i, int) or not 0 <= i < count]
    if bad or (blocks is not None and not indices):
        raise ValueError(f"model.blocks={list(indices)}: this ViT has blocks 0..{count - 1}; "
                         f"give a non-empty list of those indices or null (every block)")
    if len(set(indices)) != len(indices):
        raise ValueError(f"model.blocks={list(indices)} names a block twice")
    return [(f"blocks.{i}", model.blocks[i]) for i in sorted(indices)]


class TemporalViTBlock(TakenOverBlock):
    """timm ViT ``Block`` with a temporal module at each of its positions (``temporal``, a ModuleDict)."""

    def __init__(self, block: ViTBlock, modules: dict[str, nn.Module], prefix_tokens: int, grid: tuple[int, int]):
        super().__init__(block)
        self.temporal = nn.ModuleDict(modules)
        self.prefix_tokens, self.grid = prefix_tokens, tuple(grid)

    def _at(self, position: str, x: torch.Tensor) -> torch.Tensor:
        if position not in self.temporal:
            return x
        module = self.temporal[position]
        if getattr(module, "takes_tokens", False):
            return module(x)
        p, (h, w) = self.prefix_tokens, self.grid
        if x.shape[1] != p + h * w:
            raise ValueError(f"expected {p} prefix + {h}x{w} patch tokens, got {x.shape[1]} tokens "
                             "(the ViT was built for another input size)")
        patches = x[:, p:].transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)
        y = module(patches).flatten(2).transpose(1, 2)
        return torch.cat([x[:, :p], y], dim=1)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
                ) -> torch.Tensor:
        x = self._at("before_attn", x)
        a = self.attn(self.norm1(self._at("attn_branch", x)), attn_mask=attn_mask, is_causal=is_causal)
        x = x + self.drop_path1(self.ls1(a))
        x = self._at("before_mlp", x)
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(self._at("mlp_branch", x)))))
        return self._at("after_block", x)


def _check_vit_positions(positions: Sequence[str]) -> None:
    bad = [p for p in positions if p not in VIT_POSITIONS]
    if bad or not positions:
        resnet = [p for p in bad if p in POSITIONS]
        why = f" ({resnet} are ResNet block positions)" if resnet else ""
        raise ValueError(f"position(s) {bad or list(positions)} are not ViT block positions{why}; "
                         f"choose one or more of {list(VIT_POSITIONS)}")
    if len(set(positions)) != len(positions):
        raise ValueError(f"positions {list(positions)} name one twice")


def insert_vit(model: nn.Module, factory: TemporalFactory, positions: Sequence[str],
               blocks: Sequence[int] | None = None) -> list[str]:
    """Put ``factory(embed_dim)`` at each of ``positions`` of the chosen blocks; return the patched names."""
    _check_vit_positions(positions)
    targets = vit_blocks(model, blocks)
    for name, block in targets:  # validate everything before changing anything
        if type(block) is not ViTBlock:
            raise ValueError(f"{name} is a {type(block).__name__}, not a timm ViT Block (already patched?)")
    for name, block in targets:
        channels = block.norm1.normalized_shape[0]
        new = TemporalViTBlock(block, {p: factory(channels) for p in positions}, model.num_prefix_tokens,
                               model.patch_embed.grid_size)
        model.blocks[int(name.rpartition(".")[2])] = new
    return [n for n, _ in targets]


def replace_vit_blocks(model: nn.Module, factory: Callable[[nn.Module], nn.Module],
                       blocks: Sequence[int] | None = None) -> list[str]:
    """Each chosen block becomes ``factory(block)`` (AIM); return the names replaced."""
    targets = vit_blocks(model, blocks)
    for name, block in targets:
        if type(block) is not ViTBlock:
            raise ValueError(f"{name} is a {type(block).__name__}, not a timm ViT Block (already patched?)")
    for name, block in targets:
        model.blocks[int(name.rpartition(".")[2])] = factory(block)
    return [n for n, _ in targets]


def _add_temporal_embedding(module: nn.Module, args: tuple) -> tuple:
    x = args[0]  # (N*T, L, C): every token of frame t gets embedding t
    t = module.temporal_embedding.shape[1]
    x = (x.view(-1, t, *x.shape[1:]) + module.temporal_embedding.unsqueeze(2)).view_as(x)
    return (x, *args[1:])


def insert_temporal_embedding(model: nn.Module, num_frames: int) -> str:
    """A learned temporal embedding (1, T, C), zero at init, added to every token before the ViT's
    pre-norm (AIM's, where the official ``ViT_CLIP`` adds it: after the position embedding, before
    ``ln_pre``). It is a parameter of ``norm_pre`` (``norm_pre.temporal_embedding``; timm's ``norm_pre``
    is the CLIP ``ln_pre``, an identity on other ViTs), whose forward pre-hook adds it. Returns its name."""
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"a temporal embedding needs a timm VisionTransformer, not {type(model).__name__}")
    norm = model.norm_pre
    if hasattr(norm, "temporal_embedding"):
        raise ValueError("this ViT already has a temporal embedding")
    norm.temporal_embedding = nn.Parameter(torch.zeros(1, num_frames, model.embed_dim))
    norm.register_forward_pre_hook(_add_temporal_embedding)
    return "norm_pre.temporal_embedding"
