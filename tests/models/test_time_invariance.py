"""The temporal-reliance diagnostic's invariances follow from the architectures; pinned here on random weights.

A per-frame network with a mean over T (C2D) and one whose only temporal operation is non-local attention
over all positions (C2D + NL) give the same logits for any order of the frames; C2D-Pool's window
(t-1, t, t+1, zero padded both sides, divisor 3) is symmetric in time, so the reversed clip gives the same
logits; TAM, TSM, TEINet, C2D-TConv and I3D read the order and change under both.
Float64: the invariant ones agree to ~1e-14 (float32: ~1e-6, the summation order of the mean over T and
of C2D-Pool's adds differs between orders), the others differ by >= 1e-2.
"""

from __future__ import annotations

import pytest
import torch

from tanet_lightning.models import create_video_model
from tanet_lightning.training.diagnose import ORDERS, frame_indices, shuffled_frames

T = 8
TINY = {"channels": [8, 16, 32, 64], "stem_width": 8}  # ResNet-18's layout, narrow: a fraction of a second
# smooth random frames (4x4 noise upsampled): white noise would average out in the global pooling, and
# every order of it would give nearly the same logits whatever the network
X = torch.nn.functional.interpolate(torch.randn(2 * T, 3, 4, 4, generator=torch.Generator().manual_seed(1),
                                                dtype=torch.float64), size=32, mode="bilinear").view(2, T, 3, 32, 32)
PERMUTATIONS = [frame_indices("reversed", T), frame_indices("shuffled", T), torch.tensor([1, 0, 2, 3, 4, 5, 7, 6]),
                torch.randperm(T, generator=torch.Generator().manual_seed(5))]


def random_net(name: str, seed: int = 0) -> torch.nn.Module:
    """A tiny ResNet-18 with ``name`` inserted; every parameter and BN buffer random (BN gammas too: timm
    zero-inits the last of each block, and NL / C2D-TConv start as identities that would hide the order).
    Weights at He scale and gammas in [0.5, 1.5], so the input still shapes the logits at the end."""
    net = create_video_model("resnet18", name, 5, T, backbone_kwargs=TINY)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if t.ndim >= 2:  # conv / linear weights
                r = torch.randn(t.shape, generator=g) * (2 / t[0].numel()) ** 0.5
            elif key.endswith(("running_var", "weight")):  # BN variances and gammas: positive, around 1
                r = torch.rand(t.shape, generator=g) + 0.5
            else:  # biases, betas, running means
                r = torch.randn(t.shape, generator=g) * 0.1
            t.copy_(r)
    return net.double().eval()


@torch.no_grad()
def logits_under(net: torch.nn.Module, order: torch.Tensor) -> torch.Tensor:
    return net(X[:, order])


@pytest.mark.parametrize("name", ["c2d", "nl"])
def test_order_blind_modules_give_the_same_logits_for_any_order(name):
    net = random_net(name)
    ordered = logits_under(net, torch.arange(T))
    for perm in PERMUTATIONS:
        torch.testing.assert_close(logits_under(net, perm), ordered, rtol=0, atol=1e-10)
    # appearance does matter: one frame repeated is another input (the test can fail)
    assert (logits_under(net, frame_indices("frozen", T)) - ordered).abs().max() > 1e-2


def test_c2d_pool_is_symmetric_in_time_but_not_order_blind():
    net = random_net("c2d_pool")
    ordered = logits_under(net, torch.arange(T))
    torch.testing.assert_close(logits_under(net, frame_indices("reversed", T)), ordered, rtol=0, atol=1e-10)
    assert (logits_under(net, frame_indices("shuffled", T)) - ordered).abs().max() > 1e-2


@pytest.mark.parametrize("name", ["tam", "tsm", "teinet", "c2d_tconv", "i3d"])
def test_order_reading_modules_change_under_reversal_and_shuffle(name):
    net = random_net(name)
    ordered = logits_under(net, torch.arange(T))
    for order in ("reversed", "shuffled"):
        assert (logits_under(net, frame_indices(order, T)) - ordered).abs().max() > 1e-2, order


def test_the_orders():
    assert ORDERS == ("ordered", "reversed", "shuffled", "frozen")
    assert frame_indices("reversed", 4).tolist() == [3, 2, 1, 0]
    assert frame_indices("frozen", 8).tolist() == [4] * 8 and frame_indices("frozen", 5).tolist() == [2] * 5
    for t in (3, 4, 8, 16):
        perm = shuffled_frames(t, seed=0)
        assert sorted(perm.tolist()) == list(range(t)), t  # a permutation
        assert perm.tolist() not in (list(range(t)), list(range(t))[::-1]), t
        assert torch.equal(perm, frame_indices("shuffled", t)), "the same permutation for every video"
    assert not torch.equal(shuffled_frames(8, seed=0), shuffled_frames(8, seed=1))
