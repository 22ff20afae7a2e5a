"""One vocabulary for sizes, each parsed in one place.

- a model's size in parameters, decimal: ``0.5M`` = 500,000, ``300k`` (:func:`parse_param_count`);
- a size in bytes, binary: ``4G`` = 4 GiB, ``500M`` = 500 MiB (:func:`parse_bytes`,
  :func:`format_bytes` writes one back);
- a frame size, height first: ``90x160`` (:func:`parse_hw`).
"""

from __future__ import annotations

import math
import re

from gnerv.runtime.errors import GnervError


def parse_param_count(text: str | float | int) -> int:
    """'0.5M' -> 500000, '300k' -> 300000, 1e6 -> 1000000."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        s = str(text).strip().upper()
        mult = {"K": 1e3, "M": 1e6, "G": 1e9}.get(s[-1:], 1.0)
        try:
            value = float(s[:-1] if s[-1:] in "KMG" else s) * mult
        except ValueError:
            raise GnervError(f"model size '{text}' is not a parameter count like 0.5M or 300k")
    if value <= 0:
        raise GnervError(f"model size '{text}' must be positive")
    return int(round(value))


_SIZE_UNITS = {"T": 1 << 40, "G": 1 << 30, "M": 1 << 20, "K": 1 << 10}


def parse_bytes(text: str) -> int:
    """A byte count: '4G' (GiB), '500M', '1.5T', '64K' or plain bytes; GnervError otherwise."""
    s = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = _SIZE_UNITS.get(s[-1:], 1)
    try:
        value = float(s[:-1] if s[-1:] in _SIZE_UNITS else s) * unit
    except ValueError:
        raise GnervError(f"{text!r} is not a size like 4G, 500M or 1000000 (bytes)")
    if not (math.isfinite(value) and value > 0):
        raise GnervError(f"size {text!r} must be positive")
    return int(value)


def format_bytes(n: float) -> str:
    """Bytes for a message, in a form parse_bytes reads back (rounded up): 9.3G."""
    for suffix, unit in _SIZE_UNITS.items():
        if n >= unit:
            return f"{math.ceil(10 * n / unit) / 10:g}{suffix}"
    return f"{math.ceil(n)}"


def parse_hw(text: str) -> tuple[int, int]:
    """Parse "HxW" (height first, e.g. "90x160") into (90, 160)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m:
        raise GnervError(f"bad size {text!r}: write HEIGHTxWIDTH, for example 90x160")
    h, w = int(m.group(1)), int(m.group(2))
    if h <= 0 or w <= 0:
        raise GnervError(f"bad size {text!r}: height and width must be positive")
    return h, w
