"""The paper's (C0 -> parameters) pairs against this package's counts, for one layout.

Run: ``python benchmarks/paper_counts.py [--layout paper|wide]``. Prints a Markdown table and
writes its rows to benchmarks/records/paper_counts.json (docs/model.md's table is rendered from
it). Every count is taken twice, from ``count_params`` and from the built module (on the meta
device, so nothing is allocated), and the two must agree. No data, no training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from record import write_record

from gnerv.codec.config import (
    LAYOUTS,
    PAPER_COUNTS,
    PAPER_EXTRA_COUNTS,
    GNeRVConfig,
    count_params,
    macs_per_frame,
)
from gnerv.codec.model import GNeRV

PAPER, PAPER_EXTRA = list(PAPER_COUNTS), list(PAPER_EXTRA_COUNTS)
RECORD = Path(__file__).resolve().parent / "records" / "paper_counts.json"


def built_params(cfg: GNeRVConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in GNeRV(cfg).parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layout", choices=LAYOUTS, default="paper")
    ap.add_argument("--out", default=str(RECORD), help="the record (JSON) of the rows")
    args = ap.parse_args()
    rows = []
    print(f"layout {args.layout}\n")
    print("| source | frame | C0 | paper params | ours | error | paper GMACs | ours | error |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    worst = 0.0
    for i, (source, h, w, c0, params_m, gmacs) in enumerate(PAPER + PAPER_EXTRA):
        cfg = GNeRVConfig(h, w, c0=c0, layout=args.layout)
        n = count_params(cfg)
        if n != built_params(cfg):
            raise SystemExit(f"count_params disagrees with the built model at {cfg}")
        err = (n / 1e6 - params_m) / params_m
        if i < len(PAPER):
            worst = max(worst, abs(err))
        macs = "- | - | -"  # the paper gives MACs only in Tables 2 and 3 (1080p)
        ours = macs_per_frame(cfg) / 1e9
        if gmacs is not None:
            macs = f"{gmacs:.2f} | {ours:.2f} | {100 * (ours - gmacs) / gmacs:+.2f} %"
        extra = " (extra)" if i >= len(PAPER) else ""
        print(
            f"| {source}{extra} | {w}x{h} | {c0} | {params_m:g}M | {n / 1e6:.4f}M | "
            f"{100 * err:+.2f} % | {macs} |"
        )
        rows.append(
            {
                "source": source,
                "extra": i >= len(PAPER),
                "height": h,
                "width": w,
                "c0": c0,
                "paper_params_m": params_m,
                "params": n,
                "paper_gmacs": gmacs,
                "gmacs": ours,
            }
        )
    print(f"\nlargest |error| over the seven pairs: {100 * worst:.2f} %")
    write_record(args.out, layout=args.layout, rows=rows)


if __name__ == "__main__":
    main()
