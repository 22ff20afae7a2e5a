"""Rate-distortion of the paper's coding (8-bit min/max + counted-table ANS) against this
project's rate path (symmetric grid, compact ranges, parametric entropy model, QAT, pruning).

For each clip and model size: fit once (cached in benchmarks/out/rd_rate/, a rerun refits
nothing), code the model (a) the paper's way and (b) at several operating points of the rate
path (each fine-tune cached too). Every point's bpp is its FILE size and its PSNR comes from
DECODING the file. Prints the R-D table and the BD-rate / BD-PSNR of (b)'s best points (the
lower envelope over all sizes and operating points) against (a)'s curve over the sizes; writes
benchmarks/out/rd_rate.json and, with --plot, a PNG.

    python benchmarks/rd_rate.py                                    # the demo clip
    python benchmarks/rd_rate.py --clips bunny --bunny /path/to/bunny.mkv --epochs 60
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from gnerv.runtime.process import prepare_process

prepare_process()  # as the commands do, before torch loads: fair threads, the kept heap

import numpy as np  # noqa: E402
from record import command_line, cpu_flags, cpu_name  # noqa: E402

from gnerv.codec.config import MINMAX_SCHEME, SYMMETRIC_SCHEME, GNeRVConfig, c0_for_size  # noqa: E402
from gnerv.codec.decode import decode_layers, load_layers  # noqa: E402
from gnerv.encoder.allocate import allocate_bits  # noqa: E402
from gnerv.encoder.config import (  # noqa: E402
    AUTO_LR,
    DEFAULT_QAT_LOSS,
    MSE_LOSS,
    QAT_LR_FACTOR,
    TrainConfig,
    auto_lr,
)
from gnerv.encoder.encode import compress_checkpoint  # noqa: E402
from gnerv.encoder.qat import finetune  # noqa: E402
from gnerv.encoder.train import fit, model_from_checkpoint  # noqa: E402
from gnerv.evaluation.bd import bd_psnr, bd_rate  # noqa: E402
from gnerv.evaluation.metrics import ssim_per_frame  # noqa: E402
from gnerv.media.video import load_frames, read_video, video_fingerprint  # noqa: E402
from gnerv.runtime.sizes import parse_param_count  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
CACHE = OUT / "rd_rate"


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    frames: tuple[int, int] | None
    resize: tuple[int, int]
    sizes: tuple[str, ...]
    min_channels: int
    lr: float | str  # or "auto": the fit's default size rule (gnerv.encoder.train.auto_lr)


@dataclass(frozen=True)
class Point:
    """One operating point of the rate path: bits, QAT share of the fit's epochs, pruning."""

    bits: int | str  # or "auto": per-tensor allocation at a 0.2 dB drop (gnerv.encoder.allocate)
    qat_share: float
    prune: float
    rate_lambda: float = 0.0  # the fine-tune's rate term (gnerv.encoder.qat)
    lr_factor: float = QAT_LR_FACTOR  # the fine-tune's lr over the fit's
    loss: str = DEFAULT_QAT_LOSS  # the fine-tune's loss: mse, or the fit's own ("fit")

    @property
    def label(self) -> str:
        qat = f"+qat{self.qat_share:g}" if self.qat_share else ""
        prune = f"+prune{self.prune:g}" if self.prune else ""
        rate = f"+rate{self.rate_lambda:g}" if self.rate_lambda else ""
        lr = f"+lr{self.lr_factor:g}" if self.lr_factor != QAT_LR_FACTOR else ""
        loss = "+fitloss" if self.qat_share and self.loss == "fit" else ""
        return f"sym{self.bits}{qat}{prune}{rate}{lr}{loss}"


POINTS = (
    Point(8, 0.0, 0.0),
    Point(6, 0.1, 0.0),
    Point(5, 0.1, 0.0),
    Point(4, 0.1, 0.0),
    Point(5, 0.1, 0.3),
    Point(4, 0.1, 0.3),
    Point("auto", 0.1, 0.0),
)
# Not run by default (--points): the rate term in the fine-tune, which did not pay on the demo
# clip (docs/compression.md).
EXTRA_POINTS = tuple(Point(b, 0.1, 0.0, lam) for b in (5, 6) for lam in (0.1, 0.3, 1.0))


POINT_LABEL = re.compile(
    r"sym(?P<bits>\d+|auto)(\+qat(?P<qat>[\d.]+))?(\+prune(?P<prune>[\d.]+))?"
    r"(\+rate(?P<rate>[\d.]+))?(\+lr(?P<lr>[\d.]+))?(?P<fitloss>\+fitloss)?"
)


def parse_point(label: str) -> Point:
    """A point from its label: symB[+qatSHARE][+pruneP][+rateL][+lrF][+fitloss] (B: bits or
    auto; +fitloss: the fine-tune on the fit's own loss instead of MSE)."""
    m = POINT_LABEL.fullmatch(label)
    if m is None:
        raise ValueError(f"{label!r} is not symB[+qatSHARE][+pruneP][+rateL], e.g. sym6+qat0.1")
    bits = m["bits"] if m["bits"] == "auto" else int(m["bits"])
    lr = float(m["lr"]) if m["lr"] else QAT_LR_FACTOR
    loss = "fit" if m["fitloss"] else DEFAULT_QAT_LOSS
    return Point(
        bits, float(m["qat"] or 0), float(m["prune"] or 0), float(m["rate"] or 0), lr, loss
    )


def load_clip(clip: Clip) -> np.ndarray:
    """The clip's frames, read and resized with `gnerv extract`'s code, cached as .npy."""
    cached = CACHE / f"{clip.name}_frames.npy"
    if cached.exists():
        return load_frames(cached)[0]
    frames, _ = read_video(clip.path, frame_range=clip.frames, resize=clip.resize, progress=False)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cached, frames)
    return frames


def code(
    model_dir: Path, out: Path, bits: int | dict[str, int], scheme: str, frames: np.ndarray
) -> dict:
    fig = compress_checkpoint(model_dir, out, bits, frames, device="cpu", scheme=scheme)
    sizes = fig["sizes"]
    decoded = decode_layers(load_layers([out]), list(range(len(frames))), "cpu")
    return {
        "bytes": fig["bytes"],
        "bpp": fig["bpp"],
        "psnr": fig["psnr_quantized"],  # decoded from the file
        "ssim": float(ssim_per_frame(frames, decoded).mean()),  # the same, as gnerv evaluate
        "psnr_float": fig["psnr_float"],
        "side_share": sizes["table"] / sizes["total"],
        "header_share": sizes["header"] / sizes["total"],
    }


def run_model(
    clip: Clip, size: str, epochs: int, frames: np.ndarray, points: tuple[Point, ...] = POINTS
) -> dict:
    n, h, w, _ = frames.shape
    common = {"height": h, "width": w, "min_channels": clip.min_channels}
    cfg = GNeRVConfig(c0=c0_for_size(parse_param_count(size), **common), **common)
    # the cache's names: earlier runs' (lr 5e-3) stay valid; other lrs get a tag of their own
    tag = f"{clip.name}_{size}_e{epochs}" + ("" if clip.lr == 5e-3 else f"_lr{clip.lr}")
    fit_dir = CACHE / f"fit_{tag}"
    meta = {"fps": 20.0, "video_id": video_fingerprint(frames)}
    if not (fit_dir / "fit.json").exists():  # a finished fit is reused as it is
        fit(
            frames,
            cfg,
            TrainConfig(epochs=epochs, lr=clip.lr, device="cpu", precision="fp32"),
            fit_dir,
            resume=True,
            video_meta=meta,
            progress=False,
        )
    fitted = json.loads((fit_dir / "fit.json").read_text())
    fit_seconds = float(fitted["train_seconds"])
    paper = code(fit_dir, CACHE / f"{tag}_paper8.gnerv", 8, MINMAX_SCHEME, frames)
    params = int(fitted["params"])
    paper.update(label="paper8", size=size, params=params)
    fit_lr = auto_lr(params) if clip.lr == AUTO_LR else float(clip.lr)
    rows = [paper]
    for point in points:
        model_dir = fit_dir
        seconds = 0.0
        bits: int | dict[str, int] = point.bits if isinstance(point.bits, int) else 8
        alloc_seconds = 0.0
        if point.bits == "auto":
            t0 = time.perf_counter()
            model = model_from_checkpoint(fit_dir / "checkpoint.pt")[0]
            bits = allocate_bits(model, frames, SYMMETRIC_SCHEME, target_psnr_drop=0.2).bits
            alloc_seconds = time.perf_counter() - t0
            print(f"  allocation ({alloc_seconds:.0f} s): {bits}", flush=True)
        if point.qat_share:
            qat_epochs = max(1, round(point.qat_share * epochs))
            # (fine-tunes on the fit's loss, the default once, keep their folders' names)
            model_dir = CACHE / f"qat_{tag}_{point.label.removesuffix('+fitloss')}_q{qat_epochs}"
            if point.loss == "mse":
                model_dir = model_dir.with_name(model_dir.name + "_mse")
            qat_cfg = TrainConfig(
                epochs=qat_epochs,
                lr=fit_lr * point.lr_factor,
                warmup_fraction=0.0,
                device="cpu",
                precision="fp32",
                **(MSE_LOSS if point.loss == "mse" else {}),
            )
            t0 = time.perf_counter()
            done = finetune(
                frames,
                fit_dir,
                model_dir,
                qat_cfg,
                bits,
                point.prune,
                resume="auto",  # a cached fine-tune of other settings starts over
                progress=False,
                rate_lambda=point.rate_lambda,
            )
            seconds = done.train_seconds
            print(
                f"  {point.label}: fine-tune {seconds:.0f} s ({time.perf_counter() - t0:.0f} s "
                "this run)",
                flush=True,
            )
        row = code(model_dir, CACHE / f"{tag}_{point.label}.gnerv", bits, SYMMETRIC_SCHEME, frames)
        row.update(
            label=point.label,
            size=size,
            params=paper["params"],
            finetune_share=seconds / fit_seconds,
            alloc_seconds=alloc_seconds,
            psnr_vs_paper8=row["psnr"] - paper["psnr"],
            bytes_vs_paper8=row["bytes"] / paper["bytes"],
        )
        rows.append(row)
    for r in rows:
        print(
            f"  {clip.name} {size} {r['label']:<18} {r['bytes']:>7} B {r['bpp']:.4f} bpp "
            f"{r['psnr']:.2f} dB  side {100 * r['side_share']:.2f} %",
            flush=True,
        )
    return {
        "size": size,
        "epochs": epochs,
        "fit_seconds": fit_seconds,
        "fit_psnr": float(fitted["psnr"]),
        "rows": rows,
    }


def envelope(rows: list[dict]) -> list[dict]:
    """The points no other point beats in both rate and PSNR, by increasing rate."""
    rows = sorted(rows, key=lambda r: (r["bpp"], -r["psnr"]))
    out: list[dict] = []
    for r in rows:
        if not out or r["psnr"] > out[-1]["psnr"]:
            out.append(r)
    return out


def summarize(models: list[dict]) -> dict:
    paper = sorted((m["rows"][0] for m in models), key=lambda r: r["bpp"])
    rate = envelope([r for m in models for r in m["rows"][1:]])
    out = {
        "paper_curve": [r["label"] + "@" + r["size"] for r in paper],
        "rate_envelope": [r["label"] + "@" + r["size"] for r in rate],
    }
    if len(paper) >= 2 and len(rate) >= 2:
        args = (
            [r["bpp"] for r in paper],
            [r["psnr"] for r in paper],
            [r["bpp"] for r in rate],
            [r["psnr"] for r in rate],
        )
        try:
            out["bd_rate_percent"] = bd_rate(*args)
            out["bd_psnr_db"] = bd_psnr(*args)
        except Exception as e:  # noqa: BLE001 - no overlap: report it instead of a number
            out["bd_error"] = str(e)
    rows = [r for m in models for r in m["rows"][1:]]
    out["max_finetune_share"] = max(r.get("finetune_share", 0.0) for r in rows)
    big = [r for r in rows if r["bytes"] >= 50_000]
    out["max_side_share_files_over_50kB"] = max((r["side_share"] for r in big), default=None)
    # PSNR of each rate-path point against the paper's curve at the same file size (log-rate linear
    # interpolation, where the paper's curve covers that rate)
    lr = np.log10([r["bpp"] for r in paper])
    deltas = {
        f"{r['label']}@{r['size']}": r["psnr"]
        - float(np.interp(np.log10(r["bpp"]), lr, [p["psnr"] for p in paper]))
        for r in rows
        if lr[0] <= np.log10(r["bpp"]) <= lr[-1]
    }
    out["psnr_vs_paper_at_equal_size"] = deltas
    out["min_psnr_vs_paper_at_equal_size"] = min(deltas.values(), default=None)
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items(), strict=True):
        paper = sorted((m["rows"][0] for m in res["models"]), key=lambda r: r["bpp"])
        ax.plot([r["bpp"] for r in paper], [r["psnr"] for r in paper], "o-", label="paper: 8-bit")
        for m in res["models"]:
            rows = m["rows"][1:]
            ax.scatter(
                [r["bpp"] for r in rows],
                [r["psnr"] for r in rows],
                s=14,
                label=f"rate path, {m['size']}",
            )
        env = envelope([r for m in res["models"] for r in m["rows"][1:]])
        ax.plot(
            [r["bpp"] for r in env],
            [r["psnr"] for r in env],
            "k--",
            lw=1,
            label="rate path, envelope",
        )
        ax.set(xlabel="bpp (file size)", ylabel="PSNR (dB, decoded)", title=name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", default="demo", help="demo,realshort,bunny")
    ap.add_argument("--bunny", default=str(ROOT / "data/raw/bunny.mkv"), help="Bunny's path")
    ap.add_argument("--realshort-sizes", default="0.05M,0.1M,0.2M")
    ap.add_argument("--realshort-epochs", type=int, default=100)
    ap.add_argument("--demo-sizes", default="0.05M,0.1M")
    ap.add_argument("--bunny-sizes", default="0.05M,0.1M,0.2M")
    ap.add_argument("--demo-epochs", type=int, default=100)
    ap.add_argument("--bunny-epochs", type=int, default=60)
    ap.add_argument("--bunny-min-channels", type=int, default=16)
    ap.add_argument("--lr", default="5e-3", help="the fits' peak lr, or auto (the size rule)")
    ap.add_argument(
        "--points",
        default=",".join(p.label for p in POINTS),
        help="operating points of the rate path, by label (default: all of "
        + ", ".join(p.label for p in POINTS)
        + "; also "
        + ", ".join(p.label for p in EXTRA_POINTS)
        + ")",
    )
    ap.add_argument("--plot", type=Path, help="write the R-D plot here (PNG)")
    ap.add_argument(
        "--json",
        type=Path,
        default=OUT / "rd_rate.json",
        help="results file; other clips' results in it are kept (default %(default)s)",
    )
    args = ap.parse_args()
    try:
        points = tuple(parse_point(x) for x in args.points.split(","))
    except ValueError as e:
        ap.error(f"--points: {e}")
    lr = args.lr if args.lr == AUTO_LR else float(args.lr)
    clips = {
        "demo": (
            Clip(
                "demo",
                ROOT / "data/raw/cockatoo.mp4",
                (0, 32),
                (90, 160),
                tuple(args.demo_sizes.split(",")),
                30,
                lr,
            ),
            args.demo_epochs,
        ),
        "realshort": (
            Clip(
                "realshort",
                ROOT / "data/raw/realshort.mp4",
                (0, 32),
                (90, 160),
                tuple(args.realshort_sizes.split(",")),
                30,
                lr,
            ),
            args.realshort_epochs,
        ),
        "bunny": (
            Clip(
                "bunny",
                Path(args.bunny),
                None,
                (180, 320),
                tuple(args.bunny_sizes.split(",")),
                args.bunny_min_channels,
                lr,
            ),
            args.bunny_epochs,
        ),
    }
    out_path = args.json
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    for name in args.clips.split(","):
        clip, epochs = clips[name]
        frames = load_clip(clip)
        print(
            f"{name}: {frames.shape[0]} frames of {frames.shape[1]}x{frames.shape[2]}, "
            f"{epochs} epochs per fit",
            flush=True,
        )
        models = [run_model(clip, size, epochs, frames, points) for size in clip.sizes]
        results[name] = {
            "models": models,
            "summary": summarize(models),
            "machine": f"{os.cpu_count()}-core {cpu_name()}",
            "cpu_flags": cpu_flags(),
            "date": time.strftime("%Y-%m-%d"),
            "command": command_line(),
        }
        print(json.dumps(results[name]["summary"], indent=2), flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
