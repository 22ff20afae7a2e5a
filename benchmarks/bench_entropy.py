"""Throughput and efficiency of gnerv.codec.entropy on Laplacian-like 8-bit symbols.

Run: ``python benchmarks/bench_entropy.py [--sizes 1000000 10000000] [--repeats 5]``.
Prints a table and writes the record ``benchmarks/records/entropy.json`` (docs/performance.md's
table). Target: >= 20 M symbols/s both ways.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from record import write_record

from gnerv.codec.entropy import blob_info, decode_symbols, empirical_entropy_bits, encode_symbols

OUT = Path(__file__).resolve().parent / "records" / "entropy.json"


def laplacian_symbols(n: int, scale: float = 4.0, seed: int = 0) -> np.ndarray:
    """8-bit symbols shaped like quantized weights: Laplacian around 128, clipped."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.laplace(128.0, scale, n)), 0, 255).astype(np.int32)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(n: int, repeats: int, alphabet: int = 256) -> dict[str, float | int | str]:
    """Measure one size: encode/decode M symbols/s and payload vs empirical entropy."""
    x = laplacian_symbols(n)
    blob = encode_symbols(x, alphabet)
    if not np.array_equal(decode_symbols(blob, n, alphabet), x):
        raise SystemExit("round trip failed")
    t_enc = median_seconds(lambda: encode_symbols(x, alphabet), repeats)
    t_dec = median_seconds(lambda: decode_symbols(blob, n, alphabet), repeats)
    info = blob_info(blob, n)
    ideal_bits = empirical_entropy_bits(x, alphabet)
    return {
        "symbols": n,
        "alphabet": alphabet,
        "mode": info.mode,
        "encode_msym_s": n / t_enc / 1e6,
        "decode_msym_s": n / t_dec / 1e6,
        "encode_s": t_enc,
        "decode_s": t_dec,
        "bits_per_symbol_entropy": ideal_bits / n,
        "bits_per_symbol_payload": 8 * info.payload_bytes / n,
        "payload_over_entropy": 8 * info.payload_bytes / ideal_bits,
        "table_bytes": info.table_bytes,
        "blob_bytes": len(blob),
    }


def main() -> None:
    """Run the benchmark, print a table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    rows = [bench(n, args.repeats) for n in args.sizes]
    print(
        f"{'symbols':>10} {'mode':>5} {'enc M/s':>9} {'dec M/s':>9} {'H b/sym':>8} "
        f"{'pay b/sym':>9} {'pay/H':>8} {'table B':>8}"
    )
    for r in rows:
        print(
            f"{r['symbols']:>10} {r['mode']:>5} {r['encode_msym_s']:>9.1f} "
            f"{r['decode_msym_s']:>9.1f} {r['bits_per_symbol_entropy']:>8.4f} "
            f"{r['bits_per_symbol_payload']:>9.4f} {r['payload_over_entropy']:>8.5f} "
            f"{r['table_bytes']:>8}"
        )
    result = {
        "benchmark": "entropy",
        "repeats": args.repeats,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "constriction": importlib.metadata.version("constriction"),
        "rows": rows,
    }
    write_record(args.out, **result)


if __name__ == "__main__":
    main()
