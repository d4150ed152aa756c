"""The GPU path verified in one call: every CUDA path of the project, measured and checked, in <= 8 min on one H100.

    python benchmarks/gpu_check.py [--out DIR] [--skip SECTION ...]     # make gpu-check
    python benchmarks/gpu_check.py --cpu-smoke --out /tmp/gc             # the same code on tiny shapes, on CPU

Writes DIR/gpu_check.json and DIR/gpu_check.md (DIR: the current directory by default) and prints the
tables. Every section has a time budget (the sections' sum is 455 s); a section that spends its budget
reports what it did not run. The sections, on one machine with CUDA GPUs and no dataset:

* gpu_tests        - the `gpu`-marked tests, pass/fail each (a pytest subprocess with `-m gpu`);
* train_throughput - TANet-R50 and C2D-R50 training clips/s at 8x224², batch 8, fed from memory, in
                     fp32 / bf16 / bf16 + channels_last / bf16 + compile, and TANet/C2D for each
                     (throughput.py's model builder and timed SGD loop);
* tam_vs_reference - one TAM forward+backward at each ResNet-50 stage shape, ours vs the reference code's
                     grouped-conv formulation (temporal_modules.py's, interleaved medians);
* loader_feed      - TANet-R50 bf16 + channels_last fed from memory vs by the DataModule with 1, 2, 4, ...
                     workers (up to the cores), over generated Kinetics-like videos (data_loading.py's
                     generator: 340x256 H.264, GOP 250, 10 s) before and after `prepare` (the library the
                     prepare application runs); loader / memory is the share of the GPU's speed it feeds;
* decode           - dense 8x8 clips/s decoded by PyAV and torchcodec on the CPU and by NVDEC
                     (data.decoder=torchcodec data.decode_device=cuda), on the same files, one process;
* ddp_job          - one `python -m tanet_lightning.train trainer=ddp` job (the main job, a few batches) on
                     the GPUs present, and its exit status;

and the peak GPU memory of every setting. Every number is labelled with the device, torch, CUDA and driver.
The exit status is 1 when anything failed (a test, a section's error, the job's exit status), 2 without a
CUDA GPU (unless --cpu-smoke), else 0. `--cpu-smoke` runs every section's code on the CPU at tiny shapes
(ResNet-18, 2 frames at 32², a few steps, one loader worker, trainer=ddp_cpu instead of ddp, torch.compile
with its "eager" backend instead of inductor) and writes the same report: a check that every path runs (the
test suite runs it), not a measurement.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_loading import generate  # noqa: E402  (the Kinetics-like video generator)
from temporal_modules import STAGES, as_reference, interleaved  # noqa: E402
from throughput import FULL, build, datamodule, loader_batches, memory_batches, timed_rate  # noqa: E402

from tanet_lightning.base.errors import ConfigError  # noqa: E402
from tanet_lightning.data import prepare_dataset  # noqa: E402
from tanet_lightning.data.datamodule import VideoDataModule  # noqa: E402
from tanet_lightning.data.decoders import FrameReader, torchcodec_problem  # noqa: E402
from tanet_lightning.data.ffmpeg_libs import pyav_ffmpeg_dir  # noqa: E402
from tanet_lightning.data.index import VideoIndex  # noqa: E402
from tanet_lightning.data.sampling import ClipSampler  # noqa: E402
from tanet_lightning.models import TAM  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NO_CUDA = 2
REEXEC = "TANET_GPU_CHECK_FFMPEG"  # set on the re-exec that points torchcodec at PyAV's FFmpeg
# (setting, bf16 autocast, channels_last, torch.compile)
SETTINGS = [("fp32", False, False, False), ("bf16", True, False, False), ("bf16+channels_last", True, True, False),
            ("bf16+compile", True, False, True)]
JOB_LIMITS = ["trainer.max_epochs=1", "trainer.limit_train_batches=20", "trainer.limit_val_batches=2",
              "trainer.limit_test_batches=2", "trainer.enable_progress_bar=false"]
TINY_JOB = [  # tests/tinyconf.py's tiny synthetic set: 8 classes x (3, 1, 1) videos of 32x32
    "data.synthetic.train_per_class=3", "data.synthetic.val_per_class=1", "data.synthetic.test_per_class=1",
    "data.synthetic.size=32", "data.synthetic.min_frames=8", "data.synthetic.max_frames=10", "data.short_side=32",
    "data.crop_size=32", "data.test_crop_size=32", "data.num_workers=0", "data.batch_size=4", "data.num_frames=2",
    "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1", "trainer.enable_progress_bar=false", "callbacks.model_summary=null"]


@dataclass(frozen=True)
class Profile:
    """What each section runs: the real check on CUDA, or the CPU smoke's tiny shapes."""

    name: str
    device: str
    cfg: dict  # throughput.py's: backbone, frames, size, short_side, batch, videos (w, h, fps, frames, GOP)
    steps: int
    warmup: int
    compile_backend: str | bool  # True: inductor, as model.compile=true
    stages: list[tuple[str, int, int]]
    tam_videos: int
    reps: int
    max_workers: int
    num_videos: int
    decode_clips: int
    trainer: str
    job: list[str]
    budgets: dict[str, float]
    threads: int | None = None  # CPU threads per process (None: PyTorch's default)


def full_profile() -> Profile:
    return Profile("full", "cuda", FULL, steps=20, warmup=3, compile_backend=True, stages=STAGES, tam_videos=8,
                   reps=7, max_workers=cores(), num_videos=8, decode_clips=32, trainer="ddp", job=JOB_LIMITS,
                   budgets=dict(gpu_tests=110, train_throughput=160, tam_vs_reference=15, loader_feed=90,
                                decode=30, ddp_job=50))


def smoke_profile() -> Profile:
    tiny = dict(backbone="resnet18", frames=2, size=32, short_side=40, batch=2, videos=(64, 48, 15, 30, 250))
    stages = [(stage, c // 8, max(2, px // 8)) for stage, c, px in STAGES]
    return Profile("cpu-smoke", "cpu", tiny, steps=2, warmup=1, compile_backend="eager", stages=stages,
                   tam_videos=1, reps=2, max_workers=1, num_videos=2, decode_clips=2, trainer="ddp_cpu",
                   job=TINY_JOB, budgets=dict.fromkeys(SECTION_NAMES, 300.0),
                   threads=1)  # tiny ops on shared cores: more threads only spin (a step 40x slower measured)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ----------------------------------------------------------------------------------------------------
# what every number is measured on


def driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        return Path("/proc/driver/nvidia/version").read_text().split("Kernel Module")[1].split()[0]
    except (OSError, IndexError):
        return "none (no NVIDIA driver found)"


def labels(device: str) -> dict[str, str]:
    if device == "cuda":
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        what = f"{len(names)}x {names[0]}" if len(set(names)) == 1 else ", ".join(names)
        cuda = f"{torch.version.cuda} (cuDNN {torch.backends.cudnn.version()})"
    else:
        model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
                     platform.processor() or "unknown")
        what, cuda = f"CPU: {model}, {torch.get_num_threads()} threads", \
            f"not used (torch built with {torch.version.cuda or 'no CUDA'}; no GPU visible)"
    return {"device": what, "torch": torch.__version__, "cuda": cuda, "driver": driver_version(),
            "cpu_cores": str(cores()), "python": platform.python_version()}


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


# ----------------------------------------------------------------------------------------------------
# sections: each fills its rows within its budget


@dataclass
class Section:
    name: str
    title: str
    columns: list[str]
    budget_s: float
    status: str = "ok"  # ok | partial (budget spent) | failed | error | skipped
    reason: str | None = None
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    traceback: str | None = None

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def fits(self, what: str) -> bool:
        """Whether there is budget left to run `what`; if not, the report says it was not run."""
        if self.left() > 0:
            return True
        self.notes.append(f"{what}: not run, the section's {self.budget_s:.0f} s budget was spent")
        if self.status == "ok":
            self.status = "partial"
        return False

    def fail(self, reason: str) -> None:
        self.status, self.reason = "failed", reason if self.reason is None else f"{self.reason}; {reason}"


class Work:
    """The run's scratch folder and what several sections share: the generated videos, raw and prepared."""

    def __init__(self, folder: Path, profile: Profile):
        self.dir, self.p = folder, profile
        self._videos: dict[str, Path] | None = None

    def videos(self, s: Section) -> dict[str, Path]:
        """{"raw": annotation, "prepared": annotation}: the same videos before and after `prepare`, each list
        in its dataset's root, every video listed often enough that one epoch covers a timed loader run."""
        if self._videos is None:
            t = time.perf_counter()
            raw = self.dir / "videos"
            raw.mkdir(parents=True, exist_ok=True)
            w, h, fps, n, gop = self.p.cfg["videos"]
            names = [f"k{w}x{h}_g{gop}_{i:02d}.mp4" for i in range(self.p.num_videos)]
            with multiprocessing.Pool(min(cores(), len(names))) as pool:  # CPU work only: forking is safe
                pool.starmap(generate, [(raw / name, w, h, fps, n, "libx264", gop) for name in names])
            batches = max(loader_steps(self.p, self.p.max_workers)) * 2
            copies = -(-batches * self.p.cfg["batch"] // len(names))
            ann = raw / "gpu_check_train.txt"
            ann.write_text("".join(f"{name} {i % 4}\n" for _ in range(copies) for i, name in enumerate(names)))
            generated = time.perf_counter() - t
            dm = VideoDataModule(data_dir=raw, format="video_list", root=str(raw), train_ann=str(ann),
                                 val_ann=str(ann), num_frames=self.p.cfg["frames"], num_workers=0)
            out = self.dir / "prepared"
            plan = prepare_dataset.plan(dm.reader, dm.source, dm.class_names, out)
            result = prepare_dataset.run(plan, out, workers=min(cores(), len(names)), progress=False)
            if result.failed:
                raise RuntimeError(f"prepare failed on {sorted(result.failed)}")
            prepared = out / ann.name  # the prepared list, in the prepared root (its paths are relative to it)
            shutil.copy(plan.prepared.ann["train"], prepared)
            s.notes.append(f"{len(names)} videos {w}x{h} {n / fps:.0f} s GOP {gop} generated in {generated:.1f} s, "
                           f"prepared (GOP 30, short side <= 320) in {result.seconds:.1f} s; the lists repeat "
                           f"each {copies}x")
            self._videos = {"raw": ann, "prepared": prepared}
        return self._videos


def loader_steps(p: Profile, workers: int) -> tuple[int, int]:
    """(warm-up, timed) steps for a loader with `workers` workers: the warm-up drains the batches all workers
    make at once when they start, so the timed steps see the steady state."""
    return max(p.warmup, 2 * workers), max(p.steps, 3 * workers)


def peak_reset(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_mib(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else None


def free(device: str) -> None:
    gc.collect()
    torch._dynamo.reset()
    if device == "cuda":
        torch.cuda.empty_cache()


def model_name(backbone: str, temporal: str) -> str:
    short = {"resnet50": "R50", "resnet18": "R18"}.get(backbone, backbone)
    return f"{'TANet' if temporal == 'tam' else 'C2D'}-{short}"


def gpu_tests(p: Profile, s: Section, work: Work) -> None:
    files = sorted(str(f.relative_to(REPO)) for f in (REPO / "tests").rglob("test_*.py") if "mark.gpu" in f.read_text())
    xml = work.dir / "gpu_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
           f"--basetemp={work.dir / 'pytest'}", *files]
    s.notes.append("python -m pytest -m gpu " + " ".join(files))
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(1.0, s.left()))
    except subprocess.TimeoutExpired:
        s.fail(f"the gpu tests did not finish within the section's {s.budget_s:.0f} s budget")
        return
    for case in ET.parse(xml).getroot().iter("testcase") if xml.exists() else []:
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                message = (found.get("message") or "").strip().splitlines()[0][:200] if found.get("message") else ""
                break
        s.rows.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                       "seconds": round(float(case.get("time") or 0), 2), "message": message})
    failed = [r["test"] for r in s.rows if r["outcome"] in ("failed", "error")]
    if failed:
        s.fail(f"{len(failed)} of {len(s.rows)} gpu tests failed: {', '.join(failed)}")
    elif proc.returncode != 0 or not s.rows:
        s.fail(f"pytest exited {proc.returncode} with no test result: {proc.stdout[-500:]}{proc.stderr[-500:]}")


def train_throughput(p: Profile, s: Section, work: Work) -> None:
    for setting, amp, channels_last, compiled in SETTINGS:
        row: dict = {"setting": setting}
        for temporal in ("tam", "c2d"):
            name = model_name(p.cfg["backbone"], temporal)
            if not s.fits(f"{name} {setting}"):
                continue
            peak_reset(p.device)
            try:  # one setting failing (a compile error, out of memory) leaves the others measured
                model = build(temporal, p.cfg, p.device, p.compile_backend if compiled else False, channels_last)
                row[f"{name} clips/s"] = round(timed_rate(model, memory_batches(p.cfg, p.device), p.steps,
                                                          p.device, amp, p.warmup), 2)
                row[f"{name} peak MiB"] = peak_mib(p.device)
            except Exception as e:
                s.fail(f"{name} {setting}: {type(e).__name__}: {str(e)[:300]}")
            model = None
            free(p.device)
        tanet, c2d = (row.get(f"{model_name(p.cfg['backbone'], t)} clips/s") for t in ("tam", "c2d"))
        row["TANet/C2D"] = round(tanet / c2d, 3) if tanet and c2d else None
        s.rows.append(row)


def tam_vs_reference(p: Profile, s: Section, work: Work) -> None:
    frames = p.cfg["frames"]
    for stage, c, px in p.stages:
        if not s.fits(stage):
            continue
        torch.manual_seed(0)
        ours = TAM(c, frames).to(p.device)
        ref = as_reference(ours)
        x = torch.randn(p.tam_videos * frames, c, px, px, device=p.device, requires_grad=True)
        g = torch.randn_like(x)
        steps = {"ours": lambda m=ours, x=x, g=g: m(x).backward(g),
                 "reference": lambda m=ref, x=x, g=g: m(x).backward(g)}
        t = interleaved(steps, p.reps, p.device)
        peaks = {}
        for k, step in steps.items():
            peak_reset(p.device)
            step()
            peaks[k] = peak_mib(p.device)
        with torch.no_grad():
            diff = (ours(x) - ref(x)).abs().max().item()
        s.rows.append({"stage": stage, "shape (N*T,C,H,W)": f"({p.tam_videos * frames},{c},{px},{px})",
                       "ours ms": round(t["ours"] * 1e3, 3), "reference ms": round(t["reference"] * 1e3, 3),
                       "reference/ours": round(t["reference"] / t["ours"], 3), "max |diff|": f"{diff:.1e}",
                       "ours peak MiB": peaks["ours"], "reference peak MiB": peaks["reference"]})
        if diff > 1e-3:
            s.fail(f"{stage}: ours and the reference differ by {diff:.1e}")


def loader_feed(p: Profile, s: Section, work: Work) -> None:
    lists = work.videos(s)
    model = build("tam", p.cfg, p.device, False, channels_last=True)  # bf16 + channels_last, the fast eager path
    peak_reset(p.device)
    memory = timed_rate(model, memory_batches(p.cfg, p.device), p.steps, p.device, True, p.warmup)
    s.rows.append({"videos": "-", "feed": "memory", "clips/s": round(memory, 2), "loader/memory": 1.0,
                   "peak MiB": peak_mib(p.device)})
    workers = [w for w in (2**i for i in range(12)) if w <= p.max_workers]
    for version, ann in lists.items():
        for w in workers:
            if not s.fits(f"{version} videos, {w} workers"):
                continue
            warmup, steps = loader_steps(p, w)
            peak_reset(p.device)
            batches = loader_batches(datamodule(ann, p.cfg, w, p.device), p.device)
            rate = timed_rate(model, batches, steps, p.device, True, warmup)
            batches.close()  # the loader and its persistent workers go with the generator
            gc.collect()
            s.rows.append({"videos": version, "feed": f"loader w={w}", "clips/s": round(rate, 2),
                           "loader/memory": round(rate / memory, 3), "peak MiB": peak_mib(p.device)})


DECODERS = [("pyav", "cpu"), ("torchcodec", "cpu"), ("torchcodec", "cuda")]


def decode(p: Profile, s: Section, work: Work) -> None:
    lists = work.videos(s)
    sampler = ClipSampler("dense", p.cfg["frames"])
    for version, ann in lists.items():
        files = sorted({ann.parent / line.split()[0] for line in ann.read_text().splitlines()})
        index = VideoIndex.load(ann.parent)  # the prepared copy's sidecar (None for the raw videos)
        base = None
        for decoder, device in DECODERS:
            row = {"videos": version, "decoder": decoder, "device": "NVDEC" if device == "cuda" else "CPU"}
            try:
                reader = FrameReader(decoder, device)
            except ConfigError as e:  # not installed, no FFmpeg libraries, no GPU: said, not failed
                s.rows.append({**row, "clips/s": None, "vs pyav": None, "peak MiB": None, "note": str(e)[:160]})
                continue
            if not s.fits(f"{version} {decoder} {device}"):
                continue
            rng = np.random.default_rng(0)
            peak_reset(device)
            t = time.perf_counter()
            for i in range(p.decode_clips):
                path = files[i % len(files)]
                entry = index.lookup(path) if index is not None else None
                reader.read(path, lambda n, rng=rng: sampler.train(n, rng), index_entry=entry)
            if device == "cuda":
                torch.cuda.synchronize()
            rate = p.decode_clips / (time.perf_counter() - t)
            base = base or (rate if decoder == "pyav" else None)
            s.rows.append({**row, "clips/s": round(rate, 2), "vs pyav": round(rate / base, 3) if base else None,
                           "peak MiB": peak_mib(device), "note": ""})


def ddp_job(p: Profile, s: Section, work: Work) -> None:
    args = ["-m", "tanet_lightning.train", f"trainer={p.trainer}", *p.job]
    cwd = work.dir / "ddp_job"
    cwd.mkdir()
    env = {**os.environ, "WANDB_MODE": "disabled"}
    env.setdefault("TANET_DATA_DIR", str(work.dir / "data"))  # the synthetic data is generated there
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=max(1.0, s.left()))
        status, tail = proc.returncode, (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        status, tail = None, [f"not finished within the section's {s.budget_s:.0f} s budget"]
    metrics = sorted(cwd.glob("logs/train/runs/*/metrics.json"))
    top1 = json.loads(metrics[0].read_text()).get("test/top1") if metrics else None
    s.rows.append({"command": "python " + " ".join(args), "exit status": status,
                   "seconds": round(time.perf_counter() - t, 1), "test/top1": top1})
    if status != 0:
        s.fail(f"exit status {status}: {' | '.join(tail)[-600:]}")


SECTIONS: dict[str, tuple[str, list[str], Callable[[Profile, Section, Work], None]]] = {
    "gpu_tests": ("the gpu-marked tests", ["test", "outcome", "seconds", "message"], gpu_tests),
    "train_throughput": ("training clips/s fed from memory (SGD steps after warm-up), TANet vs C2D",
                         ["setting", "TANet clips/s", "C2D clips/s", "TANet/C2D", "TANet peak MiB", "C2D peak MiB"],
                         train_throughput),
    "tam_vs_reference": ("one TAM forward+backward per ResNet-50 stage: ours vs the reference grouped conv "
                         "(interleaved medians)",
                         ["stage", "shape (N*T,C,H,W)", "ours ms", "reference ms", "reference/ours", "max |diff|",
                          "ours peak MiB", "reference peak MiB"], tam_vs_reference),
    "loader_feed": ("TANet bf16 + channels_last training clips/s, fed from memory vs by the DataModule, before "
                    "and after prepare", ["videos", "feed", "clips/s", "loader/memory", "peak MiB"], loader_feed),
    "decode": ("dense clips/s decoded in one process: PyAV and torchcodec on the CPU, NVDEC",
               ["videos", "decoder", "device", "clips/s", "vs pyav", "peak MiB", "note"], decode),
    "ddp_job": ("one training job with trainer=ddp on the GPUs present", ["command", "exit status", "seconds",
                                                                        "test/top1"], ddp_job),
}
SECTION_NAMES = list(SECTIONS)


def columns_for(name: str, p: Profile) -> list[str]:
    """The throughput columns carry the models' names (TANet-R50 / C2D-R50; R18 in the smoke)."""
    cols = SECTIONS[name][1]
    if name != "train_throughput":
        return cols
    named = {t: model_name(p.cfg["backbone"], t) for t in ("tam", "c2d")}
    return [c.replace("TANet ", f"{named['tam']} ").replace("C2D ", f"{named['c2d']} ") for c in cols]


def run(p: Profile, skip: set[str], work: Work) -> list[Section]:
    if p.device == "cuda":
        torch.backends.cudnn.benchmark = True
    sections = []
    for name, (title, _, fn) in SECTIONS.items():
        s = Section(name, title, columns_for(name, p), p.budgets[name])
        print(f"[gpu_check] {name} (budget {s.budget_s:.0f} s) ...", file=sys.stderr, flush=True)
        if name in skip:
            s.status, s.reason = "skipped", "--skip"
        else:
            try:
                fn(p, s, work)
            except Exception as e:  # a section's crash is its result; the others still run
                s.status, s.reason, s.traceback = "error", f"{type(e).__name__}: {e}"[:1000], traceback.format_exc()
            free(p.device)
        s.seconds = round(time.perf_counter() - s.started, 1)
        print(f"[gpu_check] {name}: {s.status} in {s.seconds} s", file=sys.stderr, flush=True)
        sections.append(s)
    return sections


# ----------------------------------------------------------------------------------------------------
# the report


def report(p: Profile, lab: dict[str, str], sections: list[Section], seconds: float) -> dict:
    ok = not any(s.status in ("failed", "error") for s in sections)
    return {"tool": "benchmarks/gpu_check.py", "mode": p.name, "ok": ok,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seconds": round(seconds, 1),
            "budget_s": sum(p.budgets.values()), "labels": lab,
            "shapes": {k: v for k, v in p.cfg.items()} | {"steps": p.steps, "warmup": p.warmup},
            "sections": {s.name: {k: v for k, v in asdict(s).items() if k not in ("name", "started")}
                         | {"labels": lab} for s in sections}}


def _cell(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v).replace("|", "\\|")


def markdown(r: dict) -> str:
    lab = r["labels"]
    said = f"{lab['device']} · torch {lab['torch']} · CUDA {lab['cuda']} · driver {lab['driver']}"
    out = [f"# GPU check ({r['mode']}): {'ok' if r['ok'] else 'FAILED'}", "",
           f"{said} · {lab['cpu_cores']} CPU cores · {r['date']} · {r['seconds']} s (budget {r['budget_s']:.0f} s)"]
    if r["mode"] != "full":
        out += ["", "CPU smoke run on tiny shapes: every path ran; the numbers are not measurements."]
    for name, s in r["sections"].items():
        status = f"**{s['status']}**" + (f": {s['reason']}" if s["reason"] else "")
        out += ["", f"## {name}: {s['title']}", "",
                f"{status} · {s['seconds']} s of {s['budget_s']:.0f} s · {said}", ""]
        if s["rows"]:
            out.append("| " + " | ".join(s["columns"]) + " |")
            out.append("|" + "---|" * len(s["columns"]))
            out += ["| " + " | ".join(_cell(row.get(c)) for c in s["columns"]) + " |" for row in s["rows"]]
        out += [f"- {n}" for n in s["notes"]]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------------


def with_torchcodec_ffmpeg() -> None:
    """torchcodec loads FFmpeg's shared libraries by their plain names; where it finds none, run again with
    the ones PyAV bundles linked (data/ffmpeg_libs.py: LD_LIBRARY_PATH is read when a process starts)."""
    if os.environ.get(REEXEC) or importlib.util.find_spec("torchcodec") is None:
        return
    problem = torchcodec_problem()
    folder = pyav_ffmpeg_dir() if problem and "FFmpeg" in problem else None
    if folder is not None:
        path = os.pathsep.join(x for x in (str(folder), os.environ.get("LD_LIBRARY_PATH")) if x)
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, REEXEC: "1", "LD_LIBRARY_PATH": path})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path.cwd(), help="where gpu_check.json and gpu_check.md go")
    ap.add_argument("--cpu-smoke", action="store_true", help="the same code on the CPU at tiny shapes (tests)")
    ap.add_argument("--skip", nargs="+", default=[], choices=SECTION_NAMES, metavar="SECTION",
                    help=f"sections not to run (reported as skipped): {', '.join(SECTION_NAMES)}")
    a = ap.parse_args(argv)
    if not a.cpu_smoke and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU is visible here (torch {torch.__version__}, built with CUDA "
              f"{torch.version.cuda or 'none'}): this check measures the GPU path and needs a machine with one. "
              "`python benchmarks/gpu_check.py --cpu-smoke` runs the same code on tiny shapes on the CPU.",
              file=sys.stderr)
        return NO_CUDA
    with_torchcodec_ffmpeg()
    p = smoke_profile() if a.cpu_smoke else full_profile()
    if p.threads:  # this process and the ones it starts (the pytest run, the training job)
        torch.set_num_threads(p.threads)
        os.environ["OMP_NUM_THREADS"] = str(p.threads)
    lab = labels(p.device)
    print(f"[gpu_check] {p.name}: {lab['device']}, torch {lab['torch']}, CUDA {lab['cuda']}, driver {lab['driver']}",
          file=sys.stderr, flush=True)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        sections = run(p, set(a.skip), Work(Path(tmp), p))
    r = report(p, lab, sections, time.perf_counter() - t)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "gpu_check.json").write_text(json.dumps(r, indent=1) + "\n")
    md = markdown(r)
    (a.out / "gpu_check.md").write_text(md)
    print(md)
    for s in sections:
        if s.traceback:
            print(f"[gpu_check] {s.name} raised:\n{s.traceback}", file=sys.stderr)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
