"""SyncBatchNorm that also runs on CPU processes (gloo), for `model.sync_bn=true`.

``torch.nn.SyncBatchNorm`` refuses CPU tensors (its kernels are GPU-only, and DDP rejects it in a
CPU module), so CPU DDP could not use it and the SyncBN path could not be tested without a GPU.
``convert_sync_batchnorm(module, device)`` gives torch's SyncBatchNorm on accelerators and, on CPU,
``CPUSyncBatchNorm``: the same global batch statistics with plain tensor ops and a differentiable
all-reduce (whose backward all-reduces the gradients of the statistics, as torch's kernel does), so
2 ranks x B give the batch statistics of 1 process x 2B.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


class CPUSyncBatchNorm(_BatchNorm):
    def __init__(self, *args, process_group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.process_group = process_group

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        syncing = self.training and dist.is_available() and dist.is_initialized()
        group = self.process_group or dist.group.WORLD
        if not syncing or dist.get_world_size(group) == 1:
            return super().forward(x)  # plain BatchNorm: nothing to synchronise
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        xf = x.float()  # statistics in float32, also under bf16 autocast
        c = x.shape[1]
        # two passes (mean, then squared deviations) rather than E[x^2] - E[x]^2, which cancels badly
        total = dist_fn.all_reduce(torch.cat([xf.sum(dims), xf.new_full((1,), x.numel() / c)]), group=group)
        count = total[-1]
        mean = total[:c] / count
        shape = [1, c] + [1] * (x.dim() - 2)
        var = dist_fn.all_reduce((xf - mean.view(shape)).square().sum(dims), group=group) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                unbiased = var.detach() * count / (count - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        y = (x - mean.view(shape).to(x.dtype)) * torch.rsqrt(var + self.eps).view(shape).to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape).to(x.dtype) + self.bias.view(shape).to(x.dtype)
        return y


def convert_sync_batchnorm(module: nn.Module, device: str = "cpu", process_group=None) -> nn.Module:
    """Every BatchNorm{1,2,3}d -> a synchronised one sharing its parameters and buffers (state-dict keys
    unchanged, so checkpoints load into the plain model). ``device``: the type the model will run on."""
    if device != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group)
    if isinstance(module, _BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        out = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats, process_group=process_group)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device, process_group))
    return module
