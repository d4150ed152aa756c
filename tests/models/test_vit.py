"""Temporal modules on a timm ViT: the adapters keep the image model at step 0 and leave it after one
step, TAM on tokens at init, ATM's official layout, ``freeze_backbone`` through a real Trainer step, a timm
checkpoint through ``model.pretrained_path``.

A ViT-Ti with 8x8 patches on 32x32 frames (conf model/arch vit_tiny) cut to 2 blocks (``depth``), so each
network builds and runs in a fraction of a second; float64 where outputs are compared for equality.
"""

from __future__ import annotations

import lightning as L
import pytest
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tanet_lightning.models import create_video_model
from tanet_lightning.models.insertion_vit import TemporalViTBlock
from tanet_lightning.models.temporal import ATM, TEMPORAL, TOKEN_MODULES, create_temporal
from tanet_lightning.models.temporal.aim import Adapter
from tanet_lightning.training.module import VideoClassificationModule

VIT = "vit_tiny_patch16_224"
KW = {"img_size": 32, "patch_size": 8, "depth": 2}
T, CLASSES = 4, 5
CLIP = torch.randn(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
TINY_RESNET = {"channels": [8, 16, 32, 64], "stem_width": 8}


def vit_net(temporal: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_video_model(VIT, temporal, CLASSES, T, backbone_kwargs=KW, dropout=0.0, **kwargs)


def zero_at_init(net: torch.nn.Module) -> set[str]:
    """The new (non-image) parameters the method initialises to zero: its identity at step 0."""
    image = set(net.image_parameters)
    return {n for n, p in net.named_parameters() if n not in image and not p.detach().any()}


def randomize(net: torch.nn.Module, keep: set[str] = frozenset(), seed: int = 1) -> torch.nn.Module:
    """Every parameter random (LayerNorm / BN affine too, not 1 and 0) but ``keep``; BN statistics drawn too.
    Matrices at He scale and norm gammas in [0.5, 1.5], so signals and gradients keep their size in depth."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*net.named_parameters(), *net.named_buffers()]:
            if not t.is_floating_point() or name in keep:
                continue
            if t.ndim >= 2:
                t.copy_(torch.randn(t.shape, generator=g) * (2 / t[0].numel()) ** 0.5)
            elif name.endswith(("running_var", "weight")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return net


def image_model_of(net: torch.nn.Module) -> torch.nn.Module:
    """The plain per-frame image model (C2D) with ``net``'s image weights and classifier."""
    plain = vit_net("c2d").double().eval()
    state = net.state_dict()
    missing = plain.load_state_dict({k: v for k, v in state.items() if k in plain.state_dict()}, strict=False)
    assert not missing.missing_keys and not missing.unexpected_keys
    return plain


@pytest.mark.parametrize("name", ["st_adapter", "aim"])
def test_adapters_are_the_image_model_at_step_0_and_not_after_one_step(name):
    net = vit_net(name).double()
    keep = zero_at_init(net)
    assert keep, "the adapters start with zero projections"
    randomize(net, keep).eval()
    image = image_model_of(net)
    with torch.no_grad():
        torch.testing.assert_close(net.frame_logits(CLIP), image.frame_logits(CLIP), rtol=0, atol=1e-12)
    trained = [p for n, p in net.named_parameters() if n not in set(net.image_parameters)]
    opt = torch.optim.SGD(trained, lr=0.5)
    F.cross_entropy(net(CLIP), torch.tensor([1, 3])).backward()
    opt.step()
    with torch.no_grad():
        assert (net.frame_logits(CLIP) - image.frame_logits(CLIP)).abs().max() > 1e-6


def test_aim_temporal_embedding_is_added_before_the_pre_norm():
    """AIM's embedding sits where the official ViT_CLIP adds it: on every token, before ln_pre (norm_pre)."""
    net = vit_net("aim")
    emb = dict(net.named_parameters())["backbone.norm_pre.temporal_embedding"]
    assert emb.shape == (1, T, 192) and not emb.any()
    seen = []
    net.backbone.norm_pre.register_forward_hook(lambda m, a, out: seen.append(a[0]))
    with torch.no_grad():
        emb.copy_(torch.arange(T, dtype=emb.dtype).view(1, T, 1).expand_as(emb))
        net(CLIP.float())
        plain = vit_net("c2d")
        plain.load_state_dict(net.state_dict(), strict=False)
        vit = plain.backbone
        tokens = vit.patch_drop(vit._pos_embed(vit.patch_embed(CLIP.float().flatten(0, 1))))
    offset = torch.arange(T, dtype=tokens.dtype).repeat(2).view(-1, 1, 1)
    torch.testing.assert_close(seen[0], tokens + offset)


def test_c2d_vit_is_blind_to_frame_order():
    """The image model per frame and a mean over T: any order of the frames gives the same logits."""
    net = randomize(vit_net("c2d").double()).eval()
    with torch.no_grad():
        ordered = net(CLIP)
        for perm in (torch.arange(T).flip(0), torch.tensor([2, 0, 3, 1])):
            torch.testing.assert_close(net(CLIP[:, perm]), ordered, rtol=0, atol=1e-10)
        assert (net(CLIP[:, [0, 0, 0, 0]]) - ordered).abs().max() > 1e-3  # the input does matter


def test_tam_on_tokens_at_init():
    """TAM on a ViT (attn_branch, TAM's spec ``at_init``): block = x + attn(norm1([cls, TAM(patches)])) + mlp,
    the class token and the residual stream untouched; not the image model at step 0, and it reads the order."""
    assert "not the image model" in TEMPORAL["tam"].at_init
    net = randomize(vit_net("tam").double()).eval()
    block = net.backbone.blocks[0]
    assert isinstance(block, TemporalViTBlock) and list(block.temporal) == ["attn_branch"]
    x = torch.randn(2 * T, 1 + 16, 192, dtype=torch.float64)
    patches = x[:, 1:].transpose(1, 2).reshape(2 * T, 192, 4, 4)
    tam = block.temporal["attn_branch"]
    branch_in = torch.cat([x[:, :1], tam(patches).flatten(2).transpose(1, 2)], dim=1)
    y = x + block.attn(block.norm1(branch_in))
    expected = y + block.mlp(block.norm2(y))
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected, rtol=0, atol=1e-12)
        image = image_model_of(net)
        assert (net(CLIP) - image(CLIP)).abs().max() > 1e-6
        assert (net(CLIP[:, [3, 2, 1, 0]]) - net(CLIP)).abs().max() > 1e-6


def test_atm_layout_and_init():
    """The official ATMBlock: corrlayer (mul) then difflayer (sub), the transfer's last conv zero, so the module
    is relu(x) at step 0: the identity on ReLU outputs (a ResNet at position b), not on ViT tokens."""
    atm = create_temporal("atm", 16, T)
    assert isinstance(atm, ATM) and [n for n, _ in atm.named_children()] == ["corrlayer", "difflayer"]
    x = torch.randn(2 * T, 16, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(atm(x), F.relu(x), rtol=0, atol=0)
    resnet = randomize(create_video_model("resnet18", "atm", CLASSES, T, backbone_kwargs=TINY_RESNET), keep=set())
    # every weight random but ATM's zero conv: the patched ResNet is the plain one
    for n, p in resnet.named_parameters():
        if n.endswith("transfer.upsample.weight"):
            p.detach().zero_()
    plain = create_video_model("resnet18", "c2d", CLASSES, T, backbone_kwargs=TINY_RESNET)
    plain.load_state_dict({k: v for k, v in resnet.state_dict().items() if k in plain.state_dict()})
    video = CLIP.float()
    with torch.no_grad():
        torch.testing.assert_close(resnet.eval()(video), plain.eval()(video), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"this ViT has blocks 0..1"):  # block 7, the official one, on 2 blocks
        vit_net("atm")


def test_atm_on_a_vit_block_and_its_ops():
    net = vit_net("atm", blocks=[1])
    assert net.architecture["blocks"] == [1] and net.architecture["position"] == ["before_attn"]
    assert isinstance(net.backbone.blocks[1], TemporalViTBlock) and not isinstance(net.backbone.blocks[0],
                                                                                   TemporalViTBlock)
    assert net(CLIP.float()).shape == (2, CLASSES)
    every = create_temporal("atm", 8, T, ops=["add", "sub", "mul", "div"])
    assert [n for n, _ in every.named_children()] == ["intelayer", "difflayer", "corrlayer", "divlayer"]
    with pytest.raises(ValueError, match=r"ops=\['pow'\]"):
        create_temporal("atm", 8, T, ops=["pow"])


def test_tokshift_is_a_token_module_and_exact_under_bf16():
    """TokShift sees token sequences, not frame batches (apart from the frame-batch modules' tests): a pure
    shift, so bf16 autocast changes nothing but the dtype it was given."""
    assert set(TOKEN_MODULES) == {"tokshift"}
    m = create_temporal("tokshift", 16, T)
    x = torch.randn(2 * T, 5, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), m(x.float()), rtol=0, atol=0)


def batches(n: int = 1) -> DataLoader:
    g = torch.Generator().manual_seed(2)
    data = [{"video": torch.randn(T, 3, 32, 32, generator=g), "label": torch.tensor(i % CLASSES)}
            for i in range(2 * n)]
    return DataLoader(data, batch_size=2)


def trained_by_construction(net: torch.nn.Module) -> int:
    """What the method adds, counted from the modules themselves: in-block modules, AIM's adapters and
    temporal embedding, plus the classifier."""
    modules = [b.temporal for b in net.modules() if isinstance(b, TemporalViTBlock)]
    modules += [m for m in net.modules() if isinstance(m, Adapter)]
    modules += [b.temporal for n, b in net.backbone.named_modules()
                if n.startswith("layer") and isinstance(getattr(b, "temporal", None), torch.nn.Module)]
    count = sum(p.numel() for m in modules for p in m.parameters())
    emb = getattr(net.backbone, "norm_pre", None)
    count += emb.temporal_embedding.numel() if emb is not None and hasattr(emb, "temporal_embedding") else 0
    return count + sum(p.numel() for p in net.fc.parameters())


@pytest.mark.heavy  # trains (two Trainer steps per case)
@pytest.mark.parametrize("backbone, temporal", [(VIT, "st_adapter"), (VIT, "aim"), ("resnet18", "tam")])
def test_freeze_backbone_trains_only_the_new_modules(backbone, temporal, tmp_path):
    kwargs = {"backbone_kwargs": KW} if backbone == VIT else {"backbone_kwargs": TINY_RESNET}
    torch.manual_seed(0)
    module = VideoClassificationModule(num_classes=CLASSES, num_frames=T, backbone=backbone, temporal=temporal,
                                       dropout=0.0, freeze_backbone=True, optimizer=lambda groups: torch.optim.SGD(
                                           groups, lr=0.1), **kwargs)
    net = module.net
    randomize(net, zero_at_init(net))
    image = set(net.image_parameters)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trained == {n for n, _ in net.named_parameters() if n not in image}
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == trained_by_construction(net)
    # two steps without weight decay: the adapters' first linears get a gradient once the zero projections moved
    L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, default_root_dir=tmp_path).fit(module, batches(2))
    optimized = {id(p) for g in module.trainer.optimizers[0].param_groups for p in g["params"]}
    assert optimized == {id(p) for n, p in net.named_parameters() if n in trained}  # the optimizer holds no other
    after = net.state_dict()
    for name in image:
        assert torch.equal(after[name], before[name]), f"{name} moved"
    for name, buf in net.named_buffers():  # a frozen image model keeps its BN statistics
        if name.startswith("backbone.") and "temporal" not in name and buf.is_floating_point():
            assert torch.equal(buf, before[name]), f"{name} changed"
    moved = {n for n in trained if not torch.equal(after[n], before[n])}
    assert moved == trained, f"did not move: {sorted(trained - moved)}"


def test_a_timm_vit_checkpoint_loads_through_pretrained_path(tmp_path):
    """timm's own ViT (with its 1000-class head, as timm saves it) -> model.pretrained_path -> every backbone
    weight of the patched network is the file's; nothing missing, the head dropped."""
    torch.manual_seed(3)
    timm_vit = timm.create_model(VIT, **KW)
    path = tmp_path / "vit_tiny.pth"
    torch.save(timm_vit.state_dict(), path)
    for temporal in ("st_adapter", "aim", "tam"):
        net = create_video_model(VIT, temporal, CLASSES, T, pretrained_path=str(path), backbone_kwargs=KW)
        state = net.state_dict()
        saved = {k: v for k, v in timm_vit.state_dict().items() if not k.startswith("head.")}
        assert {n.removeprefix("backbone.") for n in net.image_parameters} <= set(saved)
        for key, value in saved.items():
            assert torch.equal(state[f"backbone.{key}"], value), f"{temporal}: {key} not loaded"


def test_model_card_shows_the_trained_parameters_of_a_frozen_backbone():
    from tanet_lightning.models.card import card_fields
    from tanet_lightning.models.hub import pretrained_config

    net = vit_net("st_adapter")
    fields = card_fields(pretrained_config(net, protocol={"crop_size": 32}))
    assert "trained parameters" not in fields and fields["blocks"] == "every block"  # trained end to end
    net.freeze_backbone()
    trained = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert trained == trained_by_construction(net)
    fields = card_fields(pretrained_config(net, protocol={"crop_size": 32}))
    assert fields["trained parameters"].startswith(f"{trained:,} (")
