"""TAM (paper Sec. 3) and its Table 2 variants: global branch only, local branch only, global + SE, TANet-R.

Every module maps a frame batch ``(N*T, C, H, W)`` to the same shape (rows frame-major per video) and is
built by ``factory(channels, num_frames, **kwargs)``; the registry (``registry.py``) names them.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .aggregation import _taps, temporal_aggregate
from .checks import _check_divides, _check_kernel_size, _check_positive_int, _frames

# TAM (Sec. 3): Y = G(X) (*) (L(X) . X); TANet-R: Y = L(X) . (G(X) (*) X).


class LocalBranch(nn.Module):
    """L: location-sensitive importance map V in (0, 1), shape (N, C, T), from the pooled descriptor."""

    def __init__(self, channels: int, beta: int = 4, kernel_size: int = 3):
        super().__init__()
        _check_divides("beta", beta, channels)
        _check_kernel_size("local_kernel_size", kernel_size)
        hidden = channels // beta
        # Sequential indices follow the reference checkpoints (tam.L.0 / L.1 / L.3)
        self.net = nn.Sequential(
            nn.Conv1d(channels, hidden, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv1d(hidden, channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, desc: torch.Tensor) -> torch.Tensor:
        return self.net(desc)


class GlobalBranch(nn.Module):
    """G: one softmax-normalised K-tap kernel per (video, channel), shape (N, C, K), from the descriptor.

    The MLP runs over the time axis, so its weights depend on T: a T=8 checkpoint cannot load into a
    T=16 model (shape mismatch on the first Linear), which is the intended guard.
    """

    def __init__(self, num_frames: int, alpha: int = 2, kernel_size: int = 3):
        super().__init__()
        _check_positive_int("num_frames", num_frames)
        _check_positive_int("alpha", alpha)
        _check_kernel_size("kernel_size", kernel_size)
        hidden = alpha * num_frames
        self.net = nn.Sequential(
            nn.Linear(num_frames, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, kernel_size, bias=False),
            nn.Softmax(dim=-1),
        )

    def forward(self, desc: torch.Tensor) -> torch.Tensor:
        n, c, t = desc.shape
        return self.net(desc.reshape(n * c, t)).view(n, c, -1)


class SEGate(nn.Module):
    """Squeeze-and-excitation gate over channels from the spatio-temporal mean: (N, C, 1) in (0, 1).

    Reduction 8 with bias-free FCs gives the paper's 24.65M for "Global branch + SE" on ResNet-50.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        _check_divides("se_reduction", reduction, channels)
        self.net = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, desc: torch.Tensor) -> torch.Tensor:
        return self.net(desc.mean(-1)).unsqueeze(-1)


class TemporalAdaptiveModule(nn.Module):
    """A gate (importance map) and/or a video-adaptive kernel, fused into one temporal aggregation.

    ``local_first=True`` is TANet's order (gate the input, then aggregate); False is TANet-R.
    Either branch may be None, which gives the paper's "global branch only" / "local branch only".
    """

    def __init__(
        self,
        channels: int,
        num_frames: int,
        L: nn.Module | None,
        G: nn.Module | None,
        local_first: bool = True,
    ):
        super().__init__()
        _check_positive_int("channels", channels)
        _check_positive_int("num_frames", num_frames)
        if L is None and G is None:
            raise ValueError("a temporal adaptive module needs a local branch L, a global branch G, or both")
        self.channels, self.num_frames, self.local_first = channels, num_frames, local_first
        self.L, self.G = L, G

    def coefficients(self, desc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Fold V (N, C, T|1) and Theta (N, C, K) into coeff (N, T, C, K); also return V, Theta."""
        v = self.L(desc) if self.L is not None else None
        theta = self.G(desc) if self.G is not None else None
        n, c, t = desc.shape
        if theta is None:  # local only: a 1-tap "kernel" that is the map itself
            coeff = v.unsqueeze(-1)
        elif v is None:
            coeff = theta.unsqueeze(2)
        elif self.local_first and v.shape[-1] > 1:
            # tap k of output frame t reads input frame t+k-pad, which the map scaled by V[t+k-pad]
            k = theta.shape[-1]
            v_taps = _taps(v, k)  # (N, C, T, K)
            coeff = v_taps * theta.unsqueeze(2)
        else:  # TANet-R, or a gate constant over time (SE): V[t] * Theta[k]
            coeff = v.unsqueeze(-1) * theta.unsqueeze(2)
        coeff = coeff.expand(n, c, t, coeff.shape[-1])  # maps constant over time (SE) broadcast here
        return coeff.permute(0, 2, 1, 3), v, theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = _frames(x, self.num_frames, self.channels)
        x5 = x.view(n, self.num_frames, *x.shape[1:])
        desc = x5.mean(dim=(-2, -1)).transpose(1, 2)  # (N, C, T): spatial squeeze
        coeff, _, _ = self.coefficients(desc)
        return temporal_aggregate(x5, coeff).view_as(x)


class TAM(TemporalAdaptiveModule):
    """Temporal Adaptive Module (paper Sec. 3): ``TAM(channels, num_frames, alpha=2, beta=4, kernel_size=3)``.

    ``local_kernel_size`` is the temporal kernel of L's first Conv1d; it follows ``kernel_size`` unless
    given, as in the official code (reference_impl.md 1.6).
    """

    def __init__(
        self,
        channels: int,
        num_frames: int,
        alpha: int = 2,
        beta: int = 4,
        kernel_size: int = 3,
        local_kernel_size: int | None = None,
        local_first: bool = True,
    ):
        _check_positive_int("channels", channels)
        _check_kernel_size("kernel_size", kernel_size)
        lk = kernel_size if local_kernel_size is None else local_kernel_size
        super().__init__(
            channels,
            num_frames,
            L=LocalBranch(channels, beta, lk),
            G=GlobalBranch(num_frames, alpha, kernel_size),
            local_first=local_first,
        )


def tam_global_only(channels: int, num_frames: int, alpha: int = 2, kernel_size: int = 3, **_) -> nn.Module:
    return TemporalAdaptiveModule(channels, num_frames, L=None, G=GlobalBranch(num_frames, alpha, kernel_size))


def tam_local_only(
    channels: int, num_frames: int, beta: int = 4, kernel_size: int = 3, local_kernel_size=None, **_
) -> nn.Module:
    lk = kernel_size if local_kernel_size is None else local_kernel_size
    return TemporalAdaptiveModule(channels, num_frames, L=LocalBranch(channels, beta, lk), G=None)


def tam_global_se(
    channels: int, num_frames: int, alpha: int = 2, kernel_size: int = 3, se_reduction: int = 8, **_
) -> nn.Module:
    return TemporalAdaptiveModule(
        channels, num_frames, L=SEGate(channels, se_reduction), G=GlobalBranch(num_frames, alpha, kernel_size)
    )


def tanet_r(channels: int, num_frames: int, **kwargs) -> nn.Module:
    return TAM(channels, num_frames, local_first=False, **kwargs)
