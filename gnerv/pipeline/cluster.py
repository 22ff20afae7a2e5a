"""What a SLURM cluster's partitions offer, and which workflow jobs ask for more.

sbatch refuses a job that asks for more CPUs, memory or GPUs than any node of its partition
has, and on some setups accepts it and leaves it pending forever; Snakemake then waits without a
word. The workflow (an `onstart` check, workflow/rules/common.smk) compares each rule's requests
with the largest node of its partition, read from `sinfo`, and stops before submitting anything,
naming the rule, the request and the limit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

# One line per node and partition: name, partition (default marked "*"), CPUs, memory, GRES.
SINFO_FORMAT = "%N|%P|%c|%m|%G"
# "gpu:4", "gpu:a100:4", "gpu:a100:4(S:0-1)"; other GRES (e.g. "shard:8") are not GPUs.
GPU_GRES = re.compile(r"^gpu(?::[^:(,]+)?:(\d+)")


@dataclass(frozen=True)
class Partition:
    """The largest node of a partition: what one job can get at most."""

    name: str
    cpus: int
    mem_mb: int
    gpus: int


@dataclass(frozen=True)
class Request:
    """What one rule's jobs ask SLURM for (the profile's resources merged into the rule's)."""

    rule_name: str
    cpus: int
    mem_mb: int | None
    gpus: int
    partition: str | None  # slurm_partition, or None for the cluster's default


def _number(text: str) -> int:
    """sinfo's "3900", "3900+" (nodes differ) or "N/A"."""
    match = re.match(r"\d+", text.strip())
    return int(match.group()) if match else 0


def gres_gpus(gres: str) -> int:
    """The GPUs in a GRES string such as "gpu:a100:4(S:0-1),shard:8"; 0 for "(null)"."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres.strip()):
        match = GPU_GRES.match(item.strip())
        if match:
            total += int(match.group(1))
    return total


def parse_sinfo(text: str) -> tuple[dict[str, Partition], str | None]:
    """Partitions (their largest node) and the default partition, from `sinfo -h -N -o
    SINFO_FORMAT` output."""
    nodes: dict[str, list[tuple[int, int, int]]] = {}
    default = None
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5:
            continue
        _, partition, cpus, mem, gres = fields
        if partition.endswith("*"):
            partition = partition[:-1]
            default = partition
        nodes.setdefault(partition, []).append((_number(cpus), _number(mem), gres_gpus(gres)))
    partitions = {
        name: Partition(
            name,
            cpus=max(n[0] for n in sizes),
            mem_mb=max(n[1] for n in sizes),
            gpus=max(n[2] for n in sizes),
        )
        for name, sizes in nodes.items()
    }
    return partitions, default


def query_partitions() -> tuple[dict[str, Partition], str | None] | None:
    """The cluster's partitions from `sinfo`; None where sinfo is missing or fails (then
    nothing is checked: sbatch still has the last word)."""
    sinfo = shutil.which("sinfo")
    if sinfo is None:
        return None
    try:
        done = subprocess.run(
            [sinfo, "-h", "-N", "-o", SINFO_FORMAT],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    partitions, default = parse_sinfo(done.stdout)
    return (partitions, default) if partitions else None


def oversized(
    requests: list[Request], partitions: dict[str, Partition], default: str | None
) -> list[str]:
    """One line per request no node of its partition can meet, naming the limit and the fix."""
    problems = []
    for req in requests:
        rule = req.rule_name
        name = req.partition or default
        part = partitions.get(name) if name else None
        if part is None:
            if req.partition:
                known = ", ".join(sorted(partitions)) or "none"
                problems.append(
                    f"rule {rule}: slurm_partition {req.partition!r} is not a partition of this "
                    f"cluster (sinfo lists: {known}); fix slurm_partition in the profile"
                )
            continue
        fix = f"lower it in the profile's set-resources ({rule}: ...) or use a bigger partition"
        where = f"the largest node of partition {part.name!r}"
        if req.cpus > part.cpus:
            problems.append(
                f"rule {rule} asks for {req.cpus} CPUs (cpus_per_task) but {where} has "
                f"{part.cpus}: {fix}"
            )
        if req.mem_mb is not None and part.mem_mb and req.mem_mb > part.mem_mb:
            problems.append(
                f"rule {rule} asks for {req.mem_mb} MB (mem_mb) but {where} has "
                f"{part.mem_mb} MB: {fix}"
            )
        if req.gpus > part.gpus:
            problems.append(
                f"rule {rule} asks for {req.gpus} GPU(s) but {where} has {part.gpus}: run on a "
                "GPU partition (slurm_partition), or on CPUs with workflow/profiles/slurm-cpu "
                "or train.device: cpu"
            )
    return problems
