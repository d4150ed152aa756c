"""The two peers' TANet-R50, written here from their published layer definitions (not imported), so the
converter is checked against models that are built the way the peers build them:

* official TAM code: a TSN wrapper whose ``base_model`` is a torchvision ResNet-50 with every bottleneck
  wrapped as ``TemporalBottleneck(net=<torchvision Bottleneck>, tam=TAM)``, ``base_model.fc`` a Dropout,
  and ``new_fc`` the classifier; TAM applies its kernel with one grouped ``conv2d`` over (1, N*C, T, H*W);
  the local conv kernel equals K; saved from DataParallel as ``{'state_dict': {'module.' + key: ...}}``.
* MMAction2 ``Recognizer2D``: ``backbone`` = ResNet whose convs are ConvModules (``.conv`` + ``.bn``),
  every bottleneck wrapped as ``TABlock(block=Bottleneck, tam=TAM)``; ``cls_head`` = TSMHead with
  ``fc_cls``; the local conv kernel is its own setting (3), decoupled from the adaptive kernel K.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class PeerTAM(nn.Module):
    def __init__(self, channels: int, t: int, k: int = 3, local_k: int | None = None, alpha: int = 2, beta: int = 4):
        super().__init__()
        local_k = k if local_k is None else local_k
        self.t, self.k = t, k
        self.G = nn.Sequential(nn.Linear(t, t * alpha, bias=False), nn.BatchNorm1d(t * alpha), nn.ReLU(inplace=True),
                               nn.Linear(t * alpha, k, bias=False), nn.Softmax(-1))
        self.L = nn.Sequential(nn.Conv1d(channels, channels // beta, local_k, padding=local_k // 2, bias=False),
                               nn.BatchNorm1d(channels // beta), nn.ReLU(inplace=True),
                               nn.Conv1d(channels // beta, channels, 1, bias=False), nn.Sigmoid())

    def forward(self, x):
        nt, c, h, w = x.shape
        n = nt // self.t
        x5 = x.view(n, self.t, c, h, w).permute(0, 2, 1, 3, 4).contiguous()  # (N, C, T, H, W)
        desc = F.adaptive_avg_pool2d(x5.view(n * c, self.t, h, w), 1).view(-1, self.t)
        kernel = self.G(desc).view(n * c, 1, -1, 1)
        gate = self.L(desc.view(n, c, self.t)).view(n, c, self.t, 1, 1)
        y = F.conv2d((x5 * gate).view(1, n * c, self.t, h * w), kernel, padding=(self.k // 2, 0), groups=n * c)
        return y.view(n, c, self.t, h, w).permute(0, 2, 1, 3, 4).contiguous().view(nt, c, h, w)


class OfficialTemporalBottleneck(nn.Module):
    def __init__(self, net: torchvision.models.resnet.Bottleneck, t: int, k: int):
        super().__init__()
        self.net, self.tam = net, PeerTAM(net.conv1.out_channels, t, k)

    def forward(self, x):
        out = self.tam(self.net.relu(self.net.bn1(self.net.conv1(x))))
        out = self.net.relu(self.net.bn2(self.net.conv2(out)))
        out = self.net.bn3(self.net.conv3(out))
        identity = x if self.net.downsample is None else self.net.downsample(x)
        return self.net.relu(out + identity)


class OfficialTSN(nn.Module):
    def __init__(self, num_classes: int, t: int = 8, k: int = 3):
        super().__init__()
        self.t = t
        self.base_model = torchvision.models.resnet50(weights=None)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            stage = getattr(self.base_model, name)
            setattr(self.base_model, name, nn.Sequential(*[OfficialTemporalBottleneck(b, t, k) for b in stage]))
        self.base_model.fc = nn.Dropout(0.5)
        self.new_fc = nn.Linear(2048, num_classes)

    def forward(self, video):  # (N, T, 3, H, W)
        n = video.shape[0]
        feats = self.base_model(video.flatten(0, 1))
        return self.new_fc(feats).view(n, self.t, -1).mean(1)

    def checkpoint(self) -> dict:
        """What the official main.py saves (model wrapped in DataParallel)."""
        return {"epoch": 100, "arch": "resnet50", "best_prec1": torch.tensor(76.1),
                "state_dict": {f"module.{k}": v for k, v in self.state_dict().items()}}


class ConvModule(nn.Module):
    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, act: bool):
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.act else x


class MMBottleneck(nn.Module):
    def __init__(self, tv: torchvision.models.resnet.Bottleneck):
        super().__init__()
        self.conv1 = ConvModule(tv.conv1, tv.bn1, True)
        self.conv2 = ConvModule(tv.conv2, tv.bn2, True)
        self.conv3 = ConvModule(tv.conv3, tv.bn3, False)
        self.downsample = None if tv.downsample is None else ConvModule(tv.downsample[0], tv.downsample[1], False)


class TABlock(nn.Module):
    def __init__(self, block: MMBottleneck, t: int, k: int, local_k: int):
        super().__init__()
        self.block, self.tam = block, PeerTAM(block.conv1.conv.out_channels, t, k, local_k)

    def forward(self, x):
        out = self.block.conv3(self.block.conv2(self.tam(self.block.conv1(x))))
        identity = x if self.block.downsample is None else self.block.downsample(x)
        return F.relu(out + identity)


class MMBackbone(nn.Module):
    def __init__(self, t: int, k: int, local_k: int):
        super().__init__()
        tv = torchvision.models.resnet50(weights=None)
        self.conv1 = ConvModule(tv.conv1, tv.bn1, True)
        self.maxpool = tv.maxpool
        for name in ("layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, nn.Sequential(*[TABlock(MMBottleneck(b), t, k, local_k) for b in getattr(tv, name)]))

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        return x


class TSMHead(nn.Module):
    def __init__(self, num_classes: int, t: int):
        super().__init__()
        self.t, self.dropout, self.fc_cls = t, nn.Dropout(0.5), nn.Linear(2048, num_classes)

    def forward(self, x, n):
        return self.fc_cls(self.dropout(x.mean(dim=(-2, -1)))).view(n, self.t, -1).mean(1)


class MMRecognizer2D(nn.Module):
    def __init__(self, num_classes: int, t: int = 8, k: int = 3, local_k: int = 3):
        super().__init__()
        self.backbone, self.cls_head = MMBackbone(t, k, local_k), TSMHead(num_classes, t)

    def forward(self, video):
        return self.cls_head(self.backbone(video.flatten(0, 1)), video.shape[0])

    def checkpoint(self) -> dict:
        """What mmengine's CheckpointHook saves (meta, state_dict; optimiser state left out here)."""
        return {"meta": {"epoch": 100, "iter": 1000, "mmengine_version": "0.8.4"}, "state_dict": self.state_dict()}


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, so that every tensor matters to the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if not p.is_floating_point():
                continue
            if name.endswith("running_var"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", "bias")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif name.endswith("weight") and p.ndim == 1:  # BN gamma
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:  # fan-in scaled, so activations stay O(1) through 50 layers
                fan_in = p[0].numel() if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
    return model
