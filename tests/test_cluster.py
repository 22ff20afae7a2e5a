"""gnerv.pipeline.cluster: reading a SLURM cluster's partitions from sinfo, and naming the jobs
that ask
for more than any node of their partition has."""

from __future__ import annotations

from gnerv.pipeline.cluster import Partition, Request, gres_gpus, oversized, parse_sinfo

SINFO = """\
cpu01|cpu*|64|257000|(null)
cpu02|cpu*|128|515000+|(null)
gpu01|gpu|32|190000|gpu:a100:4(S:0-1)
gpu02|gpu|32|190000|gpu:h100:8,shard:16
"""


def test_parse_sinfo_keeps_each_partitions_largest_node() -> None:
    partitions, default = parse_sinfo(SINFO)
    assert default == "cpu"
    assert partitions["cpu"] == Partition("cpu", cpus=128, mem_mb=515000, gpus=0)
    assert partitions["gpu"] == Partition("gpu", cpus=32, mem_mb=190000, gpus=8)


def test_gres_counts_gpus_only() -> None:
    assert gres_gpus("(null)") == 0
    assert gres_gpus("gpu:2") == 2
    assert gres_gpus("gpu:a100:4(S:0-1),shard:8") == 4
    assert gres_gpus("shard:8") == 0


def test_oversized_names_rule_request_and_limit() -> None:
    partitions, default = parse_sinfo(SINFO)
    fits = Request("fit", cpus=16, mem_mb=32000, gpus=1, partition="gpu")
    assert oversized([fits], partitions, default) == []
    too_big = [
        Request("fit", cpus=8, mem_mb=32000, gpus=1, partition=None),  # default: no GPUs
        Request("baselines", cpus=256, mem_mb=None, gpus=0, partition="cpu"),
        Request("evaluate", cpus=4, mem_mb=600000, gpus=0, partition=None),
        Request("decode", cpus=1, mem_mb=1000, gpus=0, partition="big"),
    ]
    problems = oversized(too_big, partitions, default)
    assert len(problems) == 4
    assert problems[0].startswith("rule fit asks for 1 GPU(s) but the largest node of partition")
    assert "'cpu' has 0" in problems[0]
    assert "rule baselines asks for 256 CPUs (cpus_per_task)" in problems[1]
    assert "has 128" in problems[1]
    assert "600000 MB (mem_mb)" in problems[2] and "515000 MB" in problems[2]
    assert "'big' is not a partition of this cluster (sinfo lists: cpu, gpu)" in problems[3]
