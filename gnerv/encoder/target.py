"""Encoding to a target (beyond the paper, whose pipeline always runs every stage): where a
progressive encode stops adding stages. One rule for `gnerv encode --target-psnr/--target-bpp`
(gnerv.encoder.progressive) and the workflow's `target:` section (workflow/rules/target.smk).

The stage list is the plan and its length the limit. After each stage the decoded prefix is
measured (PSNR of the decoded frames, bpp from the files' sizes), and :func:`decide` says
whether to go on: a PSNR target stops at the first prefix that reaches it; a bpp target keeps
the longest prefix at or below it and leaves out the stage that would exceed it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gnerv.runtime.errors import GnervError


@dataclass(frozen=True)
class Target:
    """A decoded prefix at or above `psnr` dB, or the last prefix at or below `bpp` (file sizes)
    before the next stage would exceed it. Exactly one of the two."""

    psnr: float | None = None
    bpp: float | None = None

    def __post_init__(self) -> None:
        if (self.psnr is None) == (self.bpp is None):
            raise GnervError("give one target: a PSNR in dB or a rate in bits per pixel")
        if self.psnr is not None and not 0 < self.psnr < 100:
            raise GnervError(f"target PSNR {self.psnr} dB is not in (0, 100): give e.g. 35")
        if self.bpp is not None and not self.bpp > 0:
            raise GnervError(f"target rate {self.bpp} bpp must be more than 0: give e.g. 0.1")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Target | None:
        """params.yaml's `target:` section (psnr, bpp; both null: no target)."""
        section = params.get("target") or {}
        psnr, bpp = section.get("psnr"), section.get("bpp")
        if psnr is None and bpp is None:
            return None
        return cls(psnr=psnr, bpp=bpp)

    def describe(self) -> str:
        return f"{self.psnr:g} dB" if self.psnr is not None else f"{self.bpp:g} bpp"


def decide(
    target: Target,
    prefixes: Sequence[Mapping[str, float]],
    limit: int,
    smaller_base: str = "--size or --stage-sizes",
    more_stages: str = "--stages, --stage-sizes",
) -> dict | None:
    """Where `target` leaves a progressive encode whose prefixes 1..k (k = len(prefixes) <=
    limit) decoded to `prefixes[i]` = {"psnr", "bpp"}: None to add stage k + 1, else the
    outcome, whose "stages" is how many layers to keep (k, or k - 1 when stage k took a bpp
    target over) and "message" says why in one line. The two option texts name, in the
    caller's words, how to make the base smaller and how to add stages."""
    k = len(prefixes)
    last = prefixes[-1]
    if target.bpp is not None and last["bpp"] > target.bpp:
        if k == 1:
            raise GnervError(
                f"stage 1 alone takes {last['bpp']:.4f} bpp, above the target "
                f"{target.describe()}: give a smaller base ({smaller_base})"
            )
        kept = prefixes[-2]["bpp"]
        why = (
            f"{kept:.4f} bpp <= {target.describe()} with {k - 1} stage(s); "
            f"stage {k} would exceed it and was left out"
        )
        return _outcome(target, True, k - 1, why)
    if target.psnr is not None and last["psnr"] >= target.psnr:
        why = f"{last['psnr']:.2f} dB >= {target.describe()} after {k} stage(s)"
        return _outcome(target, True, k, why)
    if k < limit:
        return None
    if target.psnr is not None:
        why = (
            f"{last['psnr']:.2f} dB after all {k} stage(s), the stage limit: add stages "
            f"({more_stages}) or make them larger"
        )
        return _outcome(target, False, k, why)
    why = (
        f"all {k} stage(s) fit in {target.describe()} ({last['bpp']:.4f} bpp): "
        "the stage limit was hit first"
    )
    return _outcome(target, True, k, why)


def _outcome(target: Target, met: bool, stages: int, message: str) -> dict:
    return {
        "kind": "psnr" if target.psnr is not None else "bpp",
        "value": target.psnr if target.psnr is not None else target.bpp,
        "met": met,
        "stages": stages,
        "message": message,
    }
