"""Render the docs' measured tables from the JSON records in benchmarks/records/.

A table in a doc sits between two markers naming its renderer and its record:

    <!-- table: default_coding benchmarks/records/rd_default.json -->
    | ... the rendered rows ... |
    <!-- end table -->

    python benchmarks/render_tables.py            # rewrite every marked table in docs/ and README
    python benchmarks/render_tables.py --check    # exit 1 naming each table that differs

tests/test_docs.py runs the check, so a doc's table cannot drift from its record. The records
are small JSON files the benchmarks write (machine, date, command, rows), committed with the docs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(
    r"(?P<open><!-- table: (?P<name>\w+) (?P<record>\S+) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- end table -->)",
    re.S,
)


def _bd(paper: list[dict], new: list[dict]) -> tuple[float, float]:
    from gnerv.evaluation.bd import bd_psnr, bd_rate

    a = ([r["bpp"] for r in paper], [r["psnr"] for r in paper])
    b = ([r["bpp"] for r in new], [r["psnr"] for r in new])
    return bd_rate(*a, *b), bd_psnr(*a, *b)


def default_coding(record: dict) -> str:
    """Today's coding (the paper's 8-bit min/max) against the default coding, per clip and
    size, from benchmarks/rd_rate.py's record: decoded PSNR, file size, and each clip's BD-rate
    of the default point over the three sizes."""
    from gnerv.encoder.config import CompressConfig  # the point the defaults code

    label = f"sym{CompressConfig.bits}+qat{CompressConfig.qat_share:g}"
    lines = [
        "| clip | model | paper 8-bit: bytes | bpp | PSNR (dB) | default: bytes | bpp | PSNR (dB) "
        "| size | PSNR |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    summary = []
    for clip, res in record.items():
        if not isinstance(res, dict) or "models" not in res:
            continue
        paper, new = [], []
        for model in res["models"]:
            rows = {r["label"]: r for r in model["rows"]}
            p, d = rows["paper8"], rows[label]
            paper.append(p)
            new.append(d)
            lines.append(
                f"| {clip} | {model['size']} | {p['bytes']:,} | {p['bpp']:.4f} | {p['psnr']:.2f} "
                f"| {d['bytes']:,} | {d['bpp']:.4f} | {d['psnr']:.2f} "
                f"| {d['bytes'] / p['bytes'] - 1:+.1%} | {d['psnr'] - p['psnr']:+.2f} |"
            )
        rate, psnr = _bd(paper, new)
        summary.append(f"{clip} BD-rate {rate:+.1f} %, BD-PSNR {psnr:+.2f} dB")
    return "\n".join(lines) + "\n\n" + "; ".join(summary) + ".\n"


def time_to_quality(record: dict) -> str:
    """benchmarks/time_to_quality.py's table: each path's training time, decoded PSNR and the
    time it took to reach the reference path's final training PSNR."""
    flags = ", ".join(record["machine"].get("flags", []))
    lines = [
        f"Machine: {record['machine']['cores']}-core {record['machine']['cpu']} ({flags}), "
        f"{record['date']}; `{record['command']}`.",
        "",
        "| clip | path | precision | train s | ratio | decoded PSNR (dB) | to the reference's "
        "quality: epoch, s | ratio |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in record["table"]:
        lines.append(
            f"| {row['clip']} | {row['path']} | {row['precision']} | {row['train_seconds']:.1f} "
            f"| {row['train_seconds_ratio']:.2f}x | {row['decoded_psnr']:.2f} "
            f"| {row['time_to_quality_epoch']}, {row['time_to_quality_seconds']:.1f} "
            f"| {row['time_to_quality_ratio']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def load(record: dict) -> str:
    """benchmarks/bench_load.py's table: each thread setting idle and beside busy processes."""
    flags = ", ".join(record["machine"].get("flags", []))
    lines = [
        f"Machine: {record['machine']['cores']}-core {record['machine']['cpu']} ({flags}), "
        f"{record['date']}; `{record['command']}`.",
        "",
        "| threads | busy processes | train s | slowdown | decode frames/s | slowdown |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in record["table"]:
        lines.append(
            f"| {e['variant']} | {e['hogs']} | {e['train_seconds']:.1f} | "
            f"{e.get('train_slowdown', float('nan')):.2f}x | {e['decode_fps']:.1f} | "
            f"{e.get('decode_slowdown', float('nan')):.2f}x |"
        )
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[dict], str]] = {
    "load": load,
    "default_coding": default_coding,
    "time_to_quality": time_to_quality,
}


def render(text: str) -> tuple[str, list[str]]:
    """`text` with every marked table rendered from its record, and the tables' names."""
    names = []

    def one(m: re.Match) -> str:
        name, record = m["name"], ROOT / m["record"]
        if name not in RENDERERS:
            raise SystemExit(f"unknown table renderer {name!r}: one of {', '.join(RENDERERS)}")
        names.append(f"{name} ({m['record']})")
        body = RENDERERS[name](json.loads(record.read_text()))
        return m["open"] + body + m["close"]

    return MARKER.sub(one, text), names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="report tables that differ; write nothing")
    args = p.parse_args()
    stale = []
    for doc in DOCS:
        text = doc.read_text()
        new, names = render(text)
        if new != text:
            stale.append(f"{doc.relative_to(ROOT)}: {', '.join(names)}")
            if not args.check:
                doc.write_text(new)
    if args.check and stale:
        print("tables differ from their records (python benchmarks/render_tables.py):")
        print("\n".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
