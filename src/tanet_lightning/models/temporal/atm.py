"""ATM (Wu et al., "What Can Simple Arithmetic Operations Do for Temporal Modeling?", ICCV 2023).

An arithmetic temporal module: the features of frame t and of each frame of a window around it
(t-2..t+2, zeros beyond the clip: ``context=5``) are combined by one arithmetic operation, the resulting
cues are turned back into features of the input's width and added to the input. The layout follows the
official code (whwu95/ATM, ``modules/ATM.py``), one residual block per operation, applied in turn:

    reduce      3x3 conv C -> 64 + BN + ReLU (stride 1: the official ``downsample=False``)
    op          sub: x_{t+k} - x_t (``DiffBlock``);  add: x_{t+k} + x_t (``IntegrationBlock``);
                div: log1p|x_{t+k}| - log1p|x_t| (``DivBlock``; the official code's stand-in for x_{t+k} / x_t);
                mul: the correlation of L2-normalised x_t and x_{t+k} over a 9x9 displacement window at every
                position (``SimBlock``), its 9x9 map reduced to 64 channels by four (1,3,3) 3-D convs (``Conv2D_UV2C``)
    transfer    two (1,3,3) 3-D convs 64 -> 64, the 5 offsets fused by a third ((5 x 64) -> 64), a 1x1x1 conv
                64 -> C whose weight starts at zero (``DomainTransfer``)
    out         relu(transfer + x)

``ops=("mul", "sub")`` is the official ``ATMBlock`` (``corrlayer`` then ``difflayer``; the add and div blocks
are there, commented out, for the paper's ablation); the children keep the official names.

Behaviour at step 0: the transfer's last conv is zero, so the module is ``relu(x)`` (the ReLU of every op
block). On a ResNet at position b (after conv1 + BN + ReLU) or a (a block's input, the previous block's ReLU
output) its input is non-negative and the module is the identity: the patched network is the image model.
On a ViT the patch tokens take negative values: the tokens entering the patched block are clipped at 0,
the image model is not kept (as in the official CLIP ViT). The class token is kept aside, as officially.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import _check_positive_int, _frames

__all__ = ["ATM", "ATM_OPS", "ArithmeticBlock"]

ATM_OPS = {"sub": "difflayer", "add": "intelayer", "div": "divlayer", "mul": "corrlayer"}  # op -> official name
WINDOW = 9  # the correlation's spatial window: 9 -> 5 -> 3 -> 1 through the four convs of Conv2D_UV2C


def _conv_bn_relu(c_in: int, c_out: int, stride: tuple[int, int, int] = (1, 1, 1), padding=(0, 1, 1)) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(c_in, c_out, (1, 3, 3), stride, padding, bias=False), nn.BatchNorm3d(c_out),
                         nn.ReLU(inplace=True))


class DomainTransfer(nn.Module):
    """(N*context, c_in, T, H, W) cues -> (N*T, c_out, H, W) features; the last conv starts at zero."""

    def __init__(self, c_in: int, c_out: int, context: int, hidden: int = 64):
        super().__init__()
        self.context = context
        self.conv1 = _conv_bn_relu(c_in, hidden)
        self.conv2 = _conv_bn_relu(hidden, hidden)
        self.conv3_fuse = _conv_bn_relu(hidden * context, hidden)
        self.upsample = nn.Conv3d(hidden, c_out, 1, bias=False)
        nn.init.zeros_(self.upsample.weight)  # the official init: the residual branch starts at zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(x))
        nz, c, t, h, w = x.shape
        x = self.upsample(self.conv3_fuse(x.reshape(nz // self.context, self.context * c, t, h, w)))
        return x.transpose(1, 2).flatten(0, 1)  # (N*T, c_out, H, W)


class Correlation(nn.Module):
    """SimBlock's cue maker: for each offset frame, the 9x9 local correlation map at every position, reduced
    to ``out`` channels by (1,3,3) convs over the map (Conv2D_UV2C, widths 4, 16, 64, 64)."""

    def __init__(self, out: int = 64):
        super().__init__()
        self.conv0 = _conv_bn_relu(1, 4)
        self.conv1 = _conv_bn_relu(4, 16, (1, 2, 2))
        self.conv2 = _conv_bn_relu(16, 64, (1, 2, 2))
        self.conv3 = _conv_bn_relu(64, out, padding=(0, 0, 0))

    @staticmethod
    def _normalize(x: torch.Tensor) -> torch.Tensor:
        return x / (x.square().sum(dim=-3, keepdim=True) + 1e-6).sqrt()  # over channels, the official eps

    def forward(self, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        """pre (N, T, C, H, W) frame t, post (N, K, T, C, H, W) frame t+k -> (N*K, out, T, H, W)."""
        n, k, t, c, h, w = post.shape
        pre, post = self._normalize(pre).unsqueeze(1), self._normalize(post)
        r = WINDOW // 2
        padded = F.pad(post, (r, r, r, r))
        sim = torch.stack([(pre * padded[..., i:i + h, j:j + w]).sum(dim=3)
                           for i in range(WINDOW) for j in range(WINDOW)], dim=-1)  # (N, K, T, H, W, 81)
        maps = sim.permute(0, 2, 3, 4, 1, 5).reshape(n * t * h * w, 1, k, WINDOW, WINDOW)
        out = self.conv3(self.conv2(self.conv1(self.conv0(maps))))  # (N*T*H*W, out, K, 1, 1)
        return out.view(n, t, h, w, -1, k).permute(0, 5, 4, 1, 2, 3).flatten(0, 1)


class ArithmeticBlock(nn.Module):
    """One operation's residual block: relu(x + transfer(op(reduce(x)_{t+k}, reduce(x)_t)))."""

    def __init__(self, op: str, channels: int, num_frames: int, hidden: int = 64, context: int = 5):
        super().__init__()
        self.op, self.num_frames, self.context = op, num_frames, context
        self.downsample = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1, bias=False),
                                        nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.correlation = Correlation() if op == "mul" else None
        self.transfer = DomainTransfer(64 if op == "mul" else hidden, channels, context)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.downsample(x)
        bt, c, h, w = y.shape
        pre = y.view(bt // self.num_frames, self.num_frames, c, h, w)
        half = self.context // 2
        padded = F.pad(pre, (0, 0, 0, 0, 0, 0, half, half))  # zero frames beyond the clip
        post = torch.stack([padded[:, k:k + self.num_frames] for k in range(self.context)], dim=1)  # (N, K, T, ...)
        if self.op == "mul":
            cues = self.correlation(pre, post)
        else:
            pre_k = pre.unsqueeze(1)
            cue = {"sub": lambda: post - pre_k, "add": lambda: post + pre_k,
                   "div": lambda: torch.log1p(post.abs()) - torch.log1p(pre_k.abs())}[self.op]()
            cues = cue.transpose(2, 3).flatten(0, 1)  # (N*K, C, T, H, W)
        return F.relu(self.transfer(cues) + x)


class ATM(nn.Module):
    """``ATM(channels, num_frames, ops=("mul", "sub"), hidden=64, context=5)``: the op blocks in order."""

    def __init__(self, channels: int, num_frames: int, ops: tuple[str, ...] | list[str] = ("mul", "sub"),
                 hidden: int = 64, context: int = 5):
        super().__init__()
        _check_positive_int("channels", channels)
        _check_positive_int("num_frames", num_frames)
        _check_positive_int("hidden", hidden)
        _check_positive_int("context", context)
        if context % 2 == 0:
            raise ValueError(f"context must be odd (frames t-context//2 .. t+context//2), got {context}")
        ops = list(ops)
        bad = [o for o in ops if o not in ATM_OPS]
        if bad or not ops or len(set(ops)) != len(ops):
            raise ValueError(f"ops={ops}: a non-empty list of distinct operations among {list(ATM_OPS)}")
        self.channels, self.num_frames = channels, num_frames
        for op in ops:
            self.add_module(ATM_OPS[op], ArithmeticBlock(op, channels, num_frames, hidden, context))
        self.ops = tuple(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _frames(x, self.num_frames, self.channels)
        for op in self.ops:
            x = getattr(self, ATM_OPS[op])(x)
        return x
