"""TAM and the baseline temporal modules: shapes, an explicit oracle, identities, isolation, gradients."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tanet_lightning.models.temporal import (
    TAM,
    NonLocalBlock,
    TEIModule,
    TemporalAvgPool,
    TemporalConv,
    TemporalShift,
    create_temporal,
    temporal_aggregate,
)
from weights import randomized

torch.manual_seed(0)


class Const(nn.Module):
    """A branch that ignores the descriptor and returns a fixed tensor, broadcast to (N, C, .)."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value

    def forward(self, desc):
        return self.value.expand(desc.shape[0], desc.shape[1], self.value.shape[-1])


def oracle(tam: TAM, x: torch.Tensor, local_first: bool = True) -> torch.Tensor:
    """The paper's equations written out: Y_t = sum_k Theta_k * (V . X)_{t+k-pad}, zero padded."""
    t = tam.num_frames
    n = x.shape[0] // t
    x5 = x.view(n, t, *x.shape[1:]).transpose(1, 2)  # (N, C, T, H, W)
    desc = x5.mean(dim=(-2, -1))
    v, theta = tam.L(desc), tam.G(desc)
    k = theta.shape[-1]
    z = x5 * v[..., None, None] if local_first else x5
    zp = F.pad(z, (0, 0, 0, 0, k // 2, k // 2))
    y = torch.zeros_like(x5)
    for i in range(t):
        for j in range(k):
            y[:, :, i] += theta[:, :, j, None, None] * zp[:, :, i + j]
    if not local_first:
        y = y * v[..., None, None]
    return y.transpose(1, 2).reshape_as(x)


def reference_grouped_conv(tam: TAM, x: torch.Tensor) -> torch.Tensor:
    """The reference code's formulation: one depthwise conv2d with N*C groups on (1, N*C, T, H*W)."""
    t = tam.num_frames
    n, c, h, w = x.shape[0] // t, *x.shape[1:]
    x5 = x.view(n, t, c, h, w).permute(0, 2, 1, 3, 4)
    desc = x5.mean(dim=(-2, -1))
    v, theta = tam.L(desc), tam.G(desc)
    z = (x5 * v[..., None, None]).reshape(1, n * c, t, h * w)
    k = theta.shape[-1]
    y = F.conv2d(z, theta.reshape(n * c, 1, k, 1), padding=(k // 2, 0), groups=n * c)
    return y.view(n, c, t, h, w).permute(0, 2, 1, 3, 4).reshape_as(x)


def test_tam_shape_mm_fact():
    tam = TAM(16, 8)
    assert tam(torch.randn(32, 16, 112, 112)).shape == (32, 16, 112, 112)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_tam_matches_oracle_and_reference_formulation(k):
    tam = TAM(8, 6, kernel_size=k).eval()
    x = torch.randn(3 * 6, 8, 5, 7)
    with torch.no_grad():
        y = tam(x)
        torch.testing.assert_close(y, oracle(tam, x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(y, reference_grouped_conv(tam, x), atol=1e-5, rtol=1e-5)


def test_tanet_r_matches_oracle():
    tam = create_temporal("tanet_r", 8, 4).eval()
    x = torch.randn(2 * 4, 8, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(tam(x), oracle(tam, x, local_first=False), atol=1e-5, rtol=1e-5)


def test_tam_is_identity_with_centre_tap_and_unit_map():
    tam = TAM(8, 4)
    tam.G = Const(torch.tensor([0.0, 1.0, 0.0]))
    tam.L = Const(torch.ones(1))
    x = torch.randn(8, 8, 4, 4)
    assert torch.equal(tam(x), x)


def test_tam_tap_zero_returns_previous_frame():
    tam = TAM(4, 5)
    tam.G = Const(torch.tensor([1.0, 0.0, 0.0]))
    tam.L = Const(torch.ones(1))
    x = torch.randn(2 * 5, 4, 3, 3)
    y, x5 = tam(x).view(2, 5, 4, 3, 3), x.view(2, 5, 4, 3, 3)
    assert torch.equal(y[:, 0], torch.zeros_like(y[:, 0]))
    assert torch.equal(y[:, 1:], x5[:, :-1])


def test_theta_sums_to_one_and_map_in_unit_interval():
    tam = TAM(16, 8)
    desc = torch.randn(3, 16, 8)
    _, v, theta = tam.coefficients(desc)
    torch.testing.assert_close(theta.sum(-1), torch.ones(3, 16))
    assert (theta > 0).all() and (v > 0).all() and (v < 1).all()


@pytest.mark.parametrize("name", ["tam", "tanet_r", "tam_global", "tam_local", "tam_global_se", "tsm",
                                  "c2d_pool", "c2d_tconv", "teinet", "nl"])
def test_no_leakage_between_videos(name):
    # random weights and BN statistics first: NL and C2D-TConv start as exact identities, which
    # cannot mix videos whatever the code does
    m = randomized(create_temporal(name, 8, 4)).eval()
    x = torch.randn(3 * 4, 8, 4, 4)
    x2 = x.clone()
    x2[4:8] += 10 * torch.randn(4, 8, 4, 4)  # change video 1 only
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    assert not torch.allclose(y, x, atol=1e-3)  # the module does mix frames: the test can fail
    assert not torch.allclose(y[4:8], y2[4:8])
    assert torch.allclose(y[:4], y2[:4], atol=1e-5) and torch.allclose(y[8:], y2[8:], atol=1e-5)
    assert y.shape == x.shape



@pytest.mark.parametrize("name", ["tam", "tanet_r", "tam_global", "tam_local", "tam_global_se", "teinet",
                                  "c2d_tconv", "nl"])
def test_gradients_reach_every_parameter(name):
    m = create_temporal(name, 32, 4).train()
    if name == "nl":  # zero-initialised output BN blocks gradients to theta/phi/g at step 0 by design
        nn.init.ones_(m.out[1].weight)
    x = torch.randn(2 * 4, 32, 5, 5, requires_grad=True)
    m(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_aggregate_backward_matches_autograd_gradcheck():
    x = torch.randn(2, 5, 3, 2, 2, dtype=torch.double, requires_grad=True)
    c = torch.randn(2, 5, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(temporal_aggregate, (x, c))
    c5 = torch.randn(1, 3, 2, 5, dtype=torch.double, requires_grad=True)  # K > T: outer taps fall off
    assert torch.autograd.gradcheck(temporal_aggregate, (x[:1, :3, :2], c5))


def test_tam_parameter_counts_and_shapes_reference_facts():
    for c, expected in [(64, 4336), (128, 16656), (256, 65872), (512, 262608)]:
        assert sum(p.numel() for p in TAM(c, 8).parameters()) == expected
    tam = TAM(64, 8)
    assert tam.G.net[0].weight.shape == (16, 8) and tam.G.net[1].weight.shape == (16,)
    assert tam.G.net[3].weight.shape == (3, 16)
    assert tam.L.net[0].weight.shape == (16, 64, 3) and tam.L.net[3].weight.shape == (64, 16, 1)
    assert not [n for n, _ in tam.named_parameters() if n.endswith("bias") and ".1." not in n]


def test_kernel_five_keeps_frames():
    assert TAM(8, 8, kernel_size=5)(torch.randn(16, 8, 3, 3)).shape == (16, 8, 3, 3)


def test_tsm_shift_reference_fact():
    m = TemporalShift(64, 4)
    x = torch.arange(4, dtype=torch.float).view(1, 4, 1, 1, 1).expand(1, 4, 64, 2, 2).reshape(4, 64, 2, 2)
    y = m(x).view(4, 64, 2, 2)
    assert torch.equal(y[:3, :8], x[1:, :8]) and (y[3, :8] == 0).all()  # next frame
    assert torch.equal(y[1:, 8:16], x[:-1, 8:16]) and (y[0, 8:16] == 0).all()  # previous frame
    assert torch.equal(y[:, 16:], x[:, 16:])
    assert sum(p.numel() for p in m.parameters()) == 0


def test_avg_pool_and_tconv_identity_init():
    x = torch.randn(3 * 1, 2, 1, 1)
    y = TemporalAvgPool(2, 3)(x)
    torch.testing.assert_close(y[1], x.sum(0) / 3)
    torch.testing.assert_close(y[0], (x[0] + x[1]) / 3)
    x = torch.randn(2 * 4, 6, 3, 3)
    torch.testing.assert_close(TemporalConv(6, 4)(x), x)


def test_teinet_starts_as_gated_shift():
    m = TEIModule(16, 4)
    torch.testing.assert_close(m.tim[:2], torch.tensor([[0.0, 0.0, 1.0]] * 2))
    torch.testing.assert_close(m.tim[4:], torch.tensor([[0.0, 1.0, 0.0]] * 12))


def test_non_local_starts_as_identity():
    m = NonLocalBlock(8, 2).eval()
    x = torch.randn(4, 8, 4, 4)
    torch.testing.assert_close(m(x), x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kernel_size=4), "kernel_size must be odd"),
        (dict(kernel_size=0), "kernel_size must be a positive"),
        (dict(kernel_size=-3), "kernel_size must be a positive"),
        (dict(alpha=0), "alpha must be a positive"),
        (dict(alpha=-1), "alpha must be a positive"),
        (dict(beta=0), "beta must be a positive"),
        (dict(beta=3), "beta=3 must divide the channel count 16"),
        (dict(local_kernel_size=2), "local_kernel_size must be odd"),
    ],
)
def test_bad_tam_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TAM(16, 8, **kwargs)


def test_bad_names_and_inputs_raise():
    with pytest.raises(ValueError, match="unknown temporal module 'tam2'.*choose one of"):
        create_temporal("tam2", 16, 8)
    with pytest.raises(ValueError, match="temporal module 'tsm'"):
        create_temporal("tsm", 16, 8, alpha=2)
    with pytest.raises(ValueError, match="not a whole number of 8-frame clips"):
        TAM(16, 8)(torch.randn(12, 16, 2, 2))
    with pytest.raises(ValueError, match="built for 16 channels"):
        TAM(16, 8)(torch.randn(8, 32, 2, 2))
