"""Encoding to a target (gnerv.encoder.target): where a progressive encode stops adding stages. The
CLI (`gnerv encode --target-psnr/--target-bpp`, tests/test_progressive.py) and the workflow's
`target:` (tests/test_workflow.py) both follow this one rule."""

from __future__ import annotations

import pytest

from gnerv.encoder.target import Target, decide
from gnerv.runtime.errors import GnervError

PREFIXES = [{"psnr": 25.0, "bpp": 0.5}, {"psnr": 28.0, "bpp": 0.9}, {"psnr": 30.0, "bpp": 1.3}]


def run(target: Target, limit: int = 3) -> tuple[int, dict]:
    """Measure prefixes one stage at a time, as an encoder does, until decide says stop."""
    for k in range(1, limit + 1):
        outcome = decide(target, PREFIXES[:k], limit)
        if outcome is not None:
            return k, outcome
    raise AssertionError("decide never stopped at the stage limit")


def test_psnr_target_stops_at_the_first_prefix_that_reaches_it() -> None:
    measured, outcome = run(Target(psnr=28.0))
    assert measured == 2 and outcome["stages"] == 2 and outcome["met"]
    assert "28.00 dB >= 28 dB after 2 stage(s)" in outcome["message"]


def test_psnr_target_out_of_reach_says_the_limit_came_first() -> None:
    measured, outcome = run(Target(psnr=35.0))
    assert measured == 3 and outcome["stages"] == 3 and not outcome["met"]
    assert "after all 3 stage(s), the stage limit" in outcome["message"]


def test_bpp_target_keeps_the_longest_prefix_below_it() -> None:
    measured, outcome = run(Target(bpp=1.0))
    assert measured == 3 and outcome["stages"] == 2 and outcome["met"]
    assert "stage 3 would exceed it" in outcome["message"]
    _, outcome = run(Target(bpp=5.0))
    assert outcome["stages"] == 3 and "the stage limit was hit first" in outcome["message"]
    with pytest.raises(GnervError, match="stage 1 alone takes 0.5000 bpp.*my base"):
        decide(Target(bpp=0.1), PREFIXES[:1], 3, smaller_base="my base")


@pytest.mark.parametrize(
    ("params", "expected"),
    [({}, None), ({"target": {"psnr": None, "bpp": None}}, None),
     ({"target": {"psnr": 33}}, Target(psnr=33)), ({"target": {"bpp": 0.2}}, Target(bpp=0.2))],
)  # fmt: skip
def test_target_from_params(params: dict, expected: Target | None) -> None:
    assert Target.from_params(params) == expected


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({}, "give one target"), ({"psnr": 30, "bpp": 1}, "give one target"),
     ({"psnr": 120}, "not in (0, 100)"), ({"bpp": 0}, "more than 0")],
)  # fmt: skip
def test_bad_targets_are_refused(kwargs: dict, fragment: str) -> None:
    with pytest.raises(GnervError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        Target(**kwargs)
