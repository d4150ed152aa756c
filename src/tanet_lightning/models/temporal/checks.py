"""Argument checks shared by the temporal modules: fail at construction, name the argument and the allowed values."""

from __future__ import annotations

import torch

from ..fit import check_frame_batch


def _check_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_kernel_size(name: str, k: int) -> None:
    _check_positive_int(name, k)
    if k % 2 == 0:
        raise ValueError(
            f"{name} must be odd (1, 3, 5, ...) so zero padding {name}//2 keeps T unchanged; got {k}"
        )


def _check_divides(name: str, divisor: int, channels: int) -> None:
    _check_positive_int(name, divisor)
    if channels % divisor:
        raise ValueError(
            f"{name}={divisor} must divide the channel count {channels} "
            f"(allowed: divisors of {channels}, e.g. {[d for d in (1, 2, 4, 8, 16) if channels % d == 0]})"
        )


def _frames(x: torch.Tensor, num_frames: int, channels: int | None = None) -> int:
    """Number of videos N in an (N*T, C, H, W) batch; a clear error instead of a silent re-split."""
    if x.dim() != 4:
        raise ValueError(f"expected a frame batch (N*T, C, H, W), got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"module built for {channels} channels got input with {x.shape[1]}")
    return check_frame_batch(x.shape[0], num_frames)
