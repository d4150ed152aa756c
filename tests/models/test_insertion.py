"""Block insertion on timm/torchvision backbones, the video classifier, pretrained loading, complexity."""

import copy
import functools
import itertools

import pytest
import timm
import torch
import torch.nn as nn

from tanet_lightning.analysis.complexity import TABLE2, measure
from tanet_lightning.models import STAGE_NAMES, create_video_model
from tanet_lightning.models.backbones import FAMILIES, VIT_FAMILIES, create_backbone
from tanet_lightning.models.insertion import blocks_by_stage, insert_temporal, replace_convs, stage_blocks

# (backbone, smallest convenient input side, positions that must work)
BACKBONES = {
    "resnet18": (32, "abd"),
    "resnet34": (32, "abd"),
    "resnet50": (32, "abcd"),
    "resnet101": (32, "abcd"),
    "resnext50_32x4d": (32, "abcd"),
    "mobilenetv2_100": (32, "abcd"),
    "inception_v3": (75, "a"),
    "shufflenet_v2_x1_0": (32, "ab"),
}
# ShuffleNet V2 x1.0 branches have 58/116/232 channels: beta=4 does not divide 58, beta=2 does
TAM_KWARGS = {"shufflenet_v2_x1_0": {"beta": 2}}
SUBSETS = [list(c) for r in range(1, 5) for c in itertools.combinations(STAGE_NAMES, r)]


# blocks per paper stage res2..res5 (stage boundaries: timm's feature_info; ShuffleNet: the table)
BLOCKS_PER_STAGE = {
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnext50_32x4d": (3, 4, 6, 3),
    "mobilenetv2_100": (2, 3, 7, 4),  # res4 = blocks.3 + blocks.4 (stride 16), res5 = blocks.5 + blocks.6
    "inception_v3": (0, 3, 5, 3),  # Mixed_5b-d, Mixed_6a-e, Mixed_7a-c; no blocks at stride 4
    "shufflenet_v2_x1_0": (0, 4, 8, 4),
}


# timm ViTs: their block count (model.blocks indexes them; tests/models/test_vit.py builds the tiny one)
VIT_DEPTHS = {"vit_tiny_patch16_224": 12, "vit_small_patch16_224": 12, "vit_base_patch16_224": 12,
              "vit_base_patch16_clip_224": 12, "vit_large_patch14_clip_224": 24}


def test_every_supported_backbone_is_listed():
    """CNNs with their stage table, ViTs with their depth (counted on the meta device): no backbone untested."""
    assert set(BACKBONES) == set(BLOCKS_PER_STAGE) == {n for n, f in FAMILIES.items() if f not in VIT_FAMILIES}
    assert set(VIT_DEPTHS) == {n for n, f in FAMILIES.items() if f in VIT_FAMILIES}
    for name, depth in VIT_DEPTHS.items():
        with torch.device("meta"):
            assert len(create_backbone(name).blocks) == depth, name


@functools.cache
def plain_backbone(name: str) -> nn.Module:
    """The backbone with every parameter and BN statistic random (timm zero-initialises the last BN of
    a residual branch, which would hide positions c and d)."""
    torch.manual_seed(0)
    net = create_backbone(name).eval()
    with torch.no_grad():
        for n, t in [*net.named_parameters(), *net.named_buffers()]:
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if n.endswith("running_var") else torch.randn_like(t) * 0.2)
    return net


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_stage_boundaries(backbone):
    by_stage = blocks_by_stage(plain_backbone(backbone), FAMILIES[backbone])
    assert tuple(len(by_stage[s]) for s in STAGE_NAMES) == BLOCKS_PER_STAGE[backbone]
    with torch.device("meta"):  # a patched network has the same stages (visualize reads them there)
        patched = create_video_model(backbone, "tam", 5, 4, position="a", tam=TAM_KWARGS.get(backbone))
    names = {s: [n for n, _ in blocks] for s, blocks in by_stage.items()}
    assert {s: [n for n, _ in b] for s, b in blocks_by_stage(patched.backbone, FAMILIES[backbone]).items()} == names
    if backbone == "mobilenetv2_100":
        assert [n for n, _ in by_stage["res4"]] == [*(f"blocks.3.{i}" for i in range(4)),
                                                   *(f"blocks.4.{i}" for i in range(3))]


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_patched_block_with_identity_equals_the_original_block(backbone):
    """For every supported position, each patched block with nn.Identity() as its temporal module gives
    exactly (bit for bit) the original block's output on the same input: the re-written forwards are
    timm's / torchvision's, so a library upgrade that changes a block's forward fails here."""
    size, positions = BACKBONES[backbone]
    plain = plain_backbone(backbone)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    outputs = {}
    for position in positions:
        patched = copy.deepcopy(plain)
        names = insert_temporal(patched, FAMILIES[backbone], lambda c: nn.Identity(), position)
        assert names
        outputs.clear()
        hooks = [m.get_submodule(n).register_forward_hook(
            lambda mod, args, out, key=(tag, n): outputs.__setitem__(key, out))
            for tag, m in (("plain", plain), ("patched", patched)) for n in names]
        with torch.no_grad():
            final = plain.forward_features(x), patched.forward_features(x)
        for h in hooks:
            h.remove()
        for n in names:
            assert isinstance(patched.get_submodule(n).temporal, nn.Identity)
            assert torch.equal(outputs["plain", n], outputs["patched", n]), (position, n)
        assert torch.equal(*final), position


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50", pytest.param("resnext50_32x4d", marks=pytest.mark.slow)])
def test_conv_replaced_block_with_the_same_conv_equals_the_original_block(backbone):
    """``replace_convs`` re-writes the blocks' forward (bn2 plus a replacement's ``norm_branch``): with the
    original conv put back as its own replacement, every block and the network give the original output
    bit for bit, so a timm change to a ResNet block's forward fails here."""
    plain = plain_backbone(backbone)
    patched = copy.deepcopy(plain)
    names = replace_convs(patched, "resnet", lambda conv: conv)
    assert len(names) == sum(BLOCKS_PER_STAGE[backbone])
    assert all(type(patched.get_submodule(n)).__name__.startswith("ConvReplaced") for n in names)
    assert patched.state_dict().keys() == plain.state_dict().keys()  # no key moved: ImageNet weights load
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(plain.forward_features(x), patched.forward_features(x))
    assert blocks_by_stage(patched, "resnet").keys() == blocks_by_stage(plain, "resnet").keys()
    assert [n for blocks in blocks_by_stage(patched, "resnet").values() for n, _ in blocks] == names


def test_conv_replacement_needs_a_resnet():
    with torch.device("meta"), pytest.raises(ValueError, match="need a ResNet backbone"):
        create_video_model("mobilenetv2_100", "tada", 5, 4)


HEAVY = ("resnet101", "resnext50_32x4d", "inception_v3")  # same code paths as lighter ones: `make test-all`


@pytest.mark.parametrize("backbone,position", [
    pytest.param(b, p, marks=pytest.mark.slow) if b in HEAVY and p != "a" else (b, p)
    for b, p in itertools.product(BACKBONES, "abcd")
])
def test_backbone_position_runs_forward_backward_or_says_unsupported(backbone, position):
    size, positions = BACKBONES[backbone]
    if position not in positions:
        with pytest.raises(ValueError, match=f"position '{position}' is not defined for .*supported"):
            create_video_model(backbone, "tam", 5, 3, position=position)
        return
    model = create_video_model(backbone, "tam", 5, 3, position=position, dropout=0.0,
                               tam=TAM_KWARGS.get(backbone))
    n_tam = sum(1 for n, _ in model.named_modules() if n.endswith(".temporal"))
    assert n_tam > 0
    video = torch.randn(1, 3, 3, size, size)
    out = model(video)
    assert out.shape == (1, 5)
    out.sum().backward()
    tam_params = [p for n, p in model.named_parameters() if ".temporal." in n]
    assert tam_params and all(p.grad is not None for p in tam_params)


@pytest.mark.heavy
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_every_stage_subset_builds(backbone):
    family = FAMILIES[backbone]
    with torch.device("meta"):  # built once: stage_blocks only reads it
        plain = timm.create_model(backbone, num_classes=0) if family != "shufflenetv2" else None
    for stages in SUBSETS:
        has_blocks = any(BLOCKS_PER_STAGE[backbone][STAGE_NAMES.index(s)] for s in stages)
        if not has_blocks:
            with pytest.raises(ValueError, match="hold no blocks"):
                with torch.device("meta"):
                    create_video_model(backbone, "tam", 5, 4, position="a", stages=stages,
                                       tam=TAM_KWARGS.get(backbone))
            continue
        with torch.device("meta"):
            model = create_video_model(backbone, "tam", 5, 4, position="a", stages=stages,
                                       tam=TAM_KWARGS.get(backbone))
        patched = [n for n, _ in model.named_modules() if n.endswith(".temporal")]
        if plain is not None:
            expected = len(stage_blocks(plain, family, stages))
            assert len(patched) == expected, (stages, patched)


def test_stage_subsets_match_table5b_block_counts():
    for stages, blocks in [(["res5"], 3), (["res4", "res5"], 9), (["res3", "res4", "res5"], 13),
                           (list(STAGE_NAMES), 16)]:
        with torch.device("meta"):
            model = create_video_model("resnet50", "tam", 400, 8, stages=stages)
        assert sum(1 for n, _ in model.named_modules() if n.endswith(".temporal")) == blocks


@pytest.mark.heavy
def test_stage_subset_forward_backward_on_small_resnet():
    for stages in SUBSETS:
        model = create_video_model("resnet18", "tam", 4, 3, stages=stages, dropout=0.0)
        out = model(torch.randn(2, 3, 3, 32, 32))
        out.sum().backward()
        assert out.shape == (2, 4)
        tam = [p for n, p in model.named_parameters() if ".temporal." in n]
        assert tam and all(p.grad is not None for p in tam)


@pytest.mark.parametrize("temporal", ["c2d", "c2d_pool", "c2d_tconv", "tsm", "teinet", "i3d", "nl",
                                      "tam_global", "tam_local", "tam_global_se", "tanet_r", "tam"])
def test_every_table2_model_runs(temporal):
    model = create_video_model("resnet50", temporal, 6, 4, dropout=0.0)
    out = model(torch.randn(1, 4, 3, 48, 48))
    out.sum().backward()
    assert out.shape == (1, 6)


def test_bad_model_arguments_raise():
    with pytest.raises(ValueError, match="unknown backbone 'resnet5'"):
        create_video_model("resnet5", "tam")
    with pytest.raises(ValueError, match="timm model, but its blocks are not supported"):
        create_video_model("convnext_atto", "tam")
    with pytest.raises(ValueError, match=r"model.position='e' is not a CNN block position: choose one of \['a'"):
        create_video_model("resnet18", "tam", position="e")
    with pytest.raises(ValueError, match="unknown stage"):
        create_video_model("resnet18", "tam", stages=["res6"])
    with pytest.raises(ValueError, match="unknown temporal module"):
        create_video_model("resnet18", "tanet")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        create_video_model("resnet18", "tam", tam={"kernel_size": 2})
    with pytest.raises(ValueError, match="I3D inflates the first conv of ResNet blocks"):
        create_video_model("mobilenetv2_100", "i3d")
    with pytest.raises(ValueError, match="block index 7 does not exist"):
        create_video_model("resnet18", {"name": "nl", "blocks": {"res3": [7]}})


def test_small_resnet_i3d_and_nl_extensions():
    """ResNet-18: I3D inflates the 3x3 first convs to 3x3x3; every_other puts one NL block in res3 and res4."""
    i3d = create_video_model("resnet18", "i3d", 4, 4)
    assert i3d.backbone.layer1[0].conv1.conv.weight.shape == (64, 64, 3, 3, 3)
    nl = create_video_model("resnet18", "nl", 4, 4)
    assert [n for n, _ in nl.named_modules() if n.endswith(".temporal")] == [
        "backbone.layer2.0.temporal", "backbone.layer3.0.temporal"]
    for m in (i3d, nl):
        assert m(torch.randn(1, 4, 3, 32, 32)).shape == (1, 4)


def test_clip_length_must_match_model_frames():
    model = create_video_model("resnet18", "tam", 4, 8)
    with pytest.raises(ValueError, match=r"a clip batch \(1, 16, 3, 32, 32\) has T=16 frames but the model has "
                                         r"T=8: the clip length must equal the model's T.*set data.num_frames=8"):
        model(torch.randn(1, 16, 3, 32, 32))
    with pytest.raises(ValueError, match=r"expected a clip batch \(N, T, 3, H, W\)"):
        model(torch.randn(8, 3, 32, 32))


def test_checkpoint_of_another_T_does_not_load():
    m8 = create_video_model("resnet18", "tam", 4, 8)
    m16 = create_video_model("resnet18", "tam", 4, 16)
    with pytest.raises(RuntimeError, match="temporal.G.net.0.weight"):
        m16.load_state_dict(m8.state_dict())


def test_imagenet_weights_load_into_patched_model(tmp_path):
    """Weights a test saves play the downloaded timm weights: loaded through timm's own pretrained path."""
    source = timm.create_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save(source.state_dict(), path)
    model = create_video_model("resnet18", "tam", 7, 4, pretrained_path=str(path))
    patched = model.backbone.state_dict()
    for k, v in source.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(patched[k], v), k
    # and the plain state dict loads straight into an already patched model: only TAM keys are new
    fresh = create_video_model("resnet18", "tam", 7, 4)
    missing, unexpected = fresh.backbone.load_state_dict(
        {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}, strict=False)
    assert unexpected == [] and missing and all(".temporal." in k for k in missing)
    with pytest.raises(FileNotFoundError, match="model.pretrained_path"):
        create_video_model("resnet18", "tam", pretrained_path=str(tmp_path / "nope.pth"))


# Exact multiply-adds and parameters of one 8x3x256x256 clip, ResNet-50, 400 classes (paper Table 2).
# Counting is deterministic (shapes only, meta device), so any change to a module or to the counting
# rules shows here; the paper's rounded numbers are compared separately below.
TABLE2_EXACT = {
    "C2D": (42_945_216_512, 24_327_632),
    "C2D-Pool": (42_945_216_512, 24_327_632),
    "C2D-TConv": (53_011_546_112, 28_100_048),
    "TSM": (42_945_216_512, 24_327_632),
    "TEINet": (43_010_015_232, 24_967_696),
    "I3D3x1x1": (62_541_004_800, 32_986_576),
    "NL C2D": (64_449_413_120, 31_686_096),
    "Global branch": (43_005_770_752, 24_330_960),
    "Local branch": (42_975_214_336, 25_586_992),
    "Global branch + SE": (43_006_085_120, 24_645_328),
    "TANet-R": (43_015_845_632, 25_590_320),
    "TANet": (43_015_845_632, 25_590_320),
}


@pytest.mark.heavy
def test_table2_complexity_is_pinned_and_matches_paper():
    results = {r.model: r for r in measure()}
    assert list(results) == list(TABLE2) == list(TABLE2_EXACT)
    assert {name: (r.macs, r.params) for name, r in results.items()} == TABLE2_EXACT
    for name, (_, paper_flops, paper_params) in TABLE2.items():  # how close the paper's rounding is
        r = results[name]
        params_tol = 0.2 if name == "TEINet" else 0.01
        flops_tol = 0.05 if name in ("TEINet", "NL C2D") else 0.002
        assert abs(r.params_m - paper_params) <= params_tol, name
        assert abs(r.flops_g - paper_flops) / paper_flops <= flops_tol, (name, r.flops_g)
    assert results["NL C2D"].flops_full_g == 84.8505  # attention products shown apart


def test_complexity_variants_table5():
    assert measure(["C2D"], size=224)[0].macs == 32_881_467_392
    pos = {p: (r.macs, r.params) for p in "abcd" for r in measure(["TANet"], position=p)}
    assert pos == {"a": (43_251_593_472, 40_266_864), "b": (43_015_845_632, 25_590_320),
                   "c": (42_999_330_560, 25_590_320), "d": (43_282_390_016, 44_458_064)}
    res5 = measure(["TANet"], stages=["res5"])[0]
    assert (res5.macs, res5.params) == (42_956_552_192, 25_115_456)
