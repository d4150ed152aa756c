"""2-D backbones with one interface: ``forward_features(x) -> (B, C, h, w)`` and ``num_features``.

timm models already have it; torchvision's ShuffleNet V2 (not in timm) gets a thin adapter that keeps
torchvision's parameter names, so its checkpoints load unchanged. The paper's stages res2..res5 are
found by output stride (4, 8, 16, 32): from timm's ``feature_info``, or ``STAGE_TABLES`` where a
backbone has none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn

from .checkpoint import load_checkpoint_file

# The paper's res2..res5 end at output strides 4, 8, 16 and 32. timm models say where (``feature_info``:
# the module that ends each stride); the insertion utility reads it there. torchvision's ShuffleNet V2
# has no feature_info, so its stages are written here: paper stage -> module paths (a Sequential path
# stands for its children, the blocks of that stage).
STAGE_STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
STAGE_TABLES: dict[str, dict[str, tuple[str, ...]]] = {
    "shufflenetv2": {"res2": (), "res3": ("stage2",), "res4": ("stage3",), "res5": ("stage4",)},
}
STAGE_NAMES = ("res2", "res3", "res4", "res5")

# Architectures the block-insertion utility knows (paper Tables 2, 3, 5). Pretrained tags work too,
# e.g. "resnet50.tv_in1k" (the torchvision ImageNet weights the paper used).
FAMILIES: dict[str, str] = {
    "resnet18": "resnet",
    "resnet34": "resnet",
    "resnet50": "resnet",
    "resnet101": "resnet",
    "resnext50_32x4d": "resnet",
    "mobilenetv2_100": "mobilenetv2",
    "inception_v3": "inception_v3",
    "shufflenet_v2_x1_0": "shufflenetv2",
    # timm VisionTransformers (their own block positions, model.blocks): CLIP ViT-B/16
    # (vit_base_patch16_clip_224.openai), ImageNet-21k ViT-B/16 (vit_base_patch16_224.augreg_in21k), and the
    # small ones for CPU runs (e.g. vit_tiny_patch16_224 with backbone_kwargs {img_size: 32, patch_size: 8})
    "vit_tiny_patch16_224": "vit",
    "vit_small_patch16_224": "vit",
    "vit_base_patch16_224": "vit",
    "vit_base_patch16_clip_224": "vit",
    "vit_large_patch14_clip_224": "vit",
}
VIT_FAMILIES = ("vit",)


def _rate(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v < 1


def _flag(v: Any) -> bool:
    return isinstance(v, bool)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _widths(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 4 and all(_count(c) for c in v)


# The timm arguments that ``model.backbone_kwargs`` may carry when it is read from a file (a checkpoint's
# hyper-parameters, a save_pretrained config.json): the backbone's shape and its regularisation, each with
# the values it takes. Anything else is refused there (models.video.model_args_from_file): timm also takes
# ``checkpoint_path``, ``pretrained``, ``pretrained_cfg``, ``pretrained_cfg_overlay``, ``cache_dir``...,
# which load a file or download one, and a file must not choose what is loaded. A user's own
# ``model.backbone_kwargs`` (config or command line) reaches timm as given.
ARCH_KWARGS: dict[str, Callable[[Any], bool]] = {
    "drop_rate": _rate, "drop_path_rate": _rate, "drop_block_rate": _rate,  # regularisation
    "zero_init_last": _flag, "avg_down": _flag, "replace_stem_pool": _flag,
    "channels": _widths, "stem_width": _count, "cardinality": _count, "base_width": _count,  # ResNet widths
    "block_reduce_first": _count, "down_kernel_size": _count,
    "stem_type": lambda v: v in ("", "deep", "deep_tiered"),
    # timm VisionTransformer shapes (vit_tiny's 32x32 frames, 8x8 patches) and dropouts
    "img_size": _count, "patch_size": _count, "embed_dim": _count, "depth": _count, "num_heads": _count,
    "mlp_ratio": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
    "class_token": _flag, "global_pool": lambda v: v in ("", "token", "avg", "avgmax", "max", "map"),
    "pos_drop_rate": _rate, "proj_drop_rate": _rate, "attn_drop_rate": _rate,
}


def family_of(backbone: nn.Module) -> str:
    """The family of a built backbone (a VideoClassifier does not store its backbone's name)."""
    if isinstance(backbone, ShuffleNetV2Features):
        return "shufflenetv2"
    arch = getattr(backbone, "pretrained_cfg", {}).get("architecture")
    if arch is None:
        raise ValueError(f"{type(backbone).__name__} is not a backbone the block-insertion utility knows")
    return backbone_family(arch)


def backbone_family(name: str) -> str:
    arch = name.split(".")[0]
    if arch not in FAMILIES:
        hint = " (it is a timm model, but its blocks are not supported)" if timm.is_model(arch) else ""
        raise ValueError(f"unknown backbone {name!r}{hint}; supported: {sorted(FAMILIES)}")
    return FAMILIES[arch]


class ShuffleNetV2Features(nn.Module):
    """torchvision ShuffleNet V2 without its classifier, with the timm feature interface."""

    def __init__(self, width: str = "x1_0"):
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, f"shufflenet_v2_{width}")(weights=None)
        self.conv1, self.maxpool = net.conv1, net.maxpool
        self.stage2, self.stage3, self.stage4, self.conv5 = net.stage2, net.stage3, net.stage4, net.conv5
        self.num_features = net.fc.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.stage4(self.stage3(self.stage2(x))))


def _load_local(model: nn.Module, path: Path) -> None:
    state = load_checkpoint_file(path, "model.pretrained_path")
    state = state.get("state_dict", state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.startswith("fc.")]
    if unexpected or missing:
        raise ValueError(f"{path}: does not match the backbone (missing {missing[:5]}, unexpected {unexpected[:5]})")


def create_backbone(
    name: str, pretrained: bool = False, pretrained_path: str | None = None, **timm_kwargs
) -> nn.Module:
    """A classifier-free 2-D backbone. ``pretrained`` downloads through timm (the tag picks the weights);
    ``pretrained_path`` loads a local file (a timm/torchvision state dict) instead of downloading."""
    family = backbone_family(name)
    path = Path(pretrained_path).expanduser() if pretrained_path else None
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"model.pretrained_path={pretrained_path}: no such file")
    if family == "shufflenetv2":
        model = ShuffleNetV2Features(name.split(".")[0].removeprefix("shufflenet_v2_"))
        if timm_kwargs:
            raise ValueError(f"model.backbone_kwargs {sorted(timm_kwargs)} are timm options; ShuffleNet V2 is not timm")
        if pretrained and path is None:
            raise ValueError("ShuffleNet V2 comes from torchvision: give its weights as model.pretrained_path")
        if path is not None:
            _load_local(model, path)
        return model
    kwargs = dict(timm_kwargs)  # e.g. drop_path_rate, zero_init_last
    if path is not None:  # timm's own loader, pointed at a local file: same key filtering as a download
        pretrained, kwargs["pretrained_cfg_overlay"] = True, {"file": str(path)}
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    except Exception:
        if path is not None:  # a file that is no weights file gets our error, naming the key, not timm's
            load_checkpoint_file(path, "model.pretrained_path")
        raise
