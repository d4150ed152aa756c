"""TAM speed, measured side by side in one run: ours vs the reference code's grouped-conv2d formulation.

    python benchmarks/temporal_modules.py [--device cpu|cuda] [--reps 7] [--size 224] [--videos 2] [--compile]

1. Forward+backward of one TAM at the four ResNet-50 stage shapes (position b: width 64/128/256/512
   at 56/28/14/7 px for 224 input), ours vs the reference formulation written below from
   the official code's ops/tam.py (Z = V*X materialised, then a conv2d with N*C groups on a (1, N*C, T, HW) view).
2. One SGD train step of TANet-50 over C2D-50 (8 frames), with our TAM and with the reference one;
   `--compile` adds both networks under torch.compile and prints the TANet/C2D ratio eager vs compiled.
Timings are medians of interleaved repetitions (A B A B ...), so machine noise hits both sides alike;
read the ratios, not the absolute numbers. The paper's FLOPs ratio TANet/C2D is 43.02/42.95 = 1.0016.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from tanet_lightning.models import TAM, create_video_model
from tanet_lightning.models.temporal import TemporalAdaptiveModule

STAGES = [("res2", 64, 56), ("res3", 128, 28), ("res4", 256, 14), ("res5", 512, 7)]


class ReferenceTAM(TemporalAdaptiveModule):
    """The reference implementation's forward: materialise Z = V*X, then one grouped conv2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.num_frames
        n, c, h, w = x.shape[0] // t, *x.shape[1:]
        x5 = x.view(n, t, c, h, w).permute(0, 2, 1, 3, 4).contiguous()  # (N, C, T, H, W)
        desc = x5.mean(dim=(-2, -1))
        v, theta = self.L(desc), self.G(desc)
        z = (x5 * v[..., None, None]).view(1, n * c, t, h * w)
        k = theta.shape[-1]
        y = F.conv2d(z, theta.reshape(n * c, 1, k, 1), padding=(k // 2, 0), groups=n * c)
        return y.view(n, c, t, h, w).permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)


def as_reference(tam: TAM) -> ReferenceTAM:
    return ReferenceTAM(tam.channels, tam.num_frames, L=tam.L, G=tam.G)


def use_reference_tam(model: torch.nn.Module) -> None:
    for name, module in list(model.named_modules()):
        if isinstance(module, TAM):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, as_reference(module))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], None]], reps: int, device: str) -> dict[str, float]:
    for fn in fns.values():  # warm-up (allocator, cudnn autotune, first-call dispatch)
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_modules(device: str, videos: int, reps: int, frames: int) -> None:
    print(f"\n1) one TAM, forward+backward, {videos} videos x {frames} frames, median of {reps} (ms)")
    print(
        f"{'stage':<6}{'shape (N*T,C,H,W)':>22}{'ours':>10}{'reference':>11}{'ref/ours':>10}{'max |diff|':>12}"
    )
    for stage, c, s in STAGES:
        torch.manual_seed(0)
        ours = TAM(c, frames).to(device)
        ref = as_reference(ours)
        x = torch.randn(videos * frames, c, s, s, device=device, requires_grad=True)
        g = torch.randn_like(x)

        def step(m, x=x, g=g):
            return lambda: m(x).backward(g)

        t = interleaved({"ours": step(ours), "ref": step(ref)}, reps, device)
        with torch.no_grad():
            diff = (ours(x) - ref(x)).abs().max().item()
        shape = f"({videos * frames},{c},{s},{s})"
        print(
            f"{stage:<6}{shape:>22}{t['ours'] * 1e3:>10.2f}{t['ref'] * 1e3:>11.2f}"
            f"{t['ref'] / t['ours']:>10.2f}{diff:>12.1e}"
        )


def bench_networks(device: str, videos: int, reps: int, frames: int, size: int, backbone: str,
                   compile_: bool = False) -> None:
    print(
        f"\n2) train step (fwd+bwd+SGD) of {backbone}, {videos} x {frames}x3x{size}x{size}, median of {reps} (s)"
    )
    models = {
        "C2D": create_video_model(backbone, "c2d", 400, frames),
        "TANet (ours)": create_video_model(backbone, "tam", 400, frames),
        "TANet (reference TAM)": create_video_model(backbone, "tam", 400, frames),
    }
    use_reference_tam(models["TANet (reference TAM)"])
    if compile_:  # torch.compile (inductor): TAM's aggregation becomes plain ops that inductor fuses
        for name, temporal in (("C2D compiled", "c2d"), ("TANet compiled", "tam")):
            models[name] = create_video_model(backbone, temporal, 400, frames)
            models[name].backbone.compile()
    video = torch.randn(videos, frames, 3, size, size, device=device)
    label = torch.randint(0, 400, (videos,), device=device)

    def step(model):
        model.to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def run():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(video), label).backward()
            opt.step()

        return run

    t = interleaved({k: step(m) for k, m in models.items()}, reps, device)
    base = t["C2D"]
    for k, v in t.items():
        print(f"{k:<24}{v:>8.3f} s   x{v / base:.3f} of C2D")
    if compile_:
        print(f"TANet/C2D step time: eager x{t['TANet (ours)'] / base:.3f}, "
              f"compiled x{t['TANet compiled'] / t['C2D compiled']:.3f}")
    print(f"paper FLOPs ratio TANet/C2D: {43.02 / 42.95:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--videos", type=int, default=2, help="clips per batch")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--skip-network", action="store_true")
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd C2D and TANet (part 2)")
    a = p.parse_args()
    torch.backends.cudnn.benchmark = True
    where = torch.cuda.get_device_name() if a.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device {a.device} ({where}), torch {torch.__version__}")
    bench_modules(a.device, a.videos, a.reps, a.frames)
    if not a.skip_network:
        bench_networks(
            a.device, 1 if a.device == "cpu" else 8 * a.videos, a.reps, a.frames, a.size, a.backbone, a.compile
        )


if __name__ == "__main__":
    main()
