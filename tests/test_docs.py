"""The project's words only: README.md, docs/ and the package's sources speak of the project.

A user reads these files without access to the developers' tracker, machines or tools, so they
must not cite tracker numbers (``#17``, ``issue 14``) or the development environment (its
benchmark tools, paths, machines, working sessions, a CPU lock shared by developers). Figures
are dated by their date and machine, not by a working session. The test lists every hit as
``file:line: word`` so that each can be rewritten in the project's own terms.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A tracker number: "#" and digits, not glued to a word or an entity (``a#1``, ``&#123;``), not
# followed by more of a name (``#1f77b4``, ``#3-stage``), and not an all-digit colour of 6 or 8
# digits. Occurrences inside a URL or a Markdown link target are removed before matching.
ISSUE_NUMBER = re.compile(r"(?<![\w&#/])#(?!(?:\d{6}|\d{8})\b)\d+(?![\w-])")
# "issue 17", "issues #13", "Issue #14's", "PR 3", "pull request #2"
ISSUE_WORD = re.compile(r"\b(?:issues?|PRs?|pull requests?)\s*#?\s*\d+\b", re.IGNORECASE)

# The development environment: its tools, paths, machines, sessions and arrangements.
DEV_WORDS = re.compile(
    r"|".join(
        [
            r"\bfarm-[a-z]",  # the environment's benchmark and studio tools (farm-bench, ...)
            r"(?<![\w.])/work/",  # its checkout and shared-data paths
            r"\.\./shared/",  # the shared data folder beside the checkout
            r"\bdev(?:elopment)?[ -](?:VM|machines?|box|environment)\b",
            r"\bother engineers?\b",
            r"\b(?:this|that|today's|the last|an? earlier|the previous|the next|a second|"
            r"second|earlier|later|last) (?:work )?session\b",
            r"\b(?:the )?last wave\b",
            r"\bCPU[- ]lock\b",
            r"\bcpu\.lock\b",
            r"\bflock /tmp\b",
            r"\bsandbox",
            r"\bKINDS\.md\b",
            r"\bdevice tool\b",
            r"\bno GPU (?:machine )?was lent\b",
            # the code's history rather than the code: "today's path", "the new path", ...
            r"\btoday(?:'s)?\b",
            r"\bthe (?:new|old) (?:path|code|thread setting|arithmetic)\b",
            r"\b(?:defaults|code) of the day\b",
        ]
    ),
    re.IGNORECASE,
)

# Spans removed before matching: URLs and Markdown link targets (anchors such as
# ``model.md#the-time-branch-ablation-paper-43`` and ``https://host/page#12`` are addresses).
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)
LINK_TARGET = re.compile(r"\]\([^)\s]*\)")


def checked_files() -> list[Path]:
    """README.md, every text file under docs/, the package's sources, the workflow's files and
    the benchmarks with their committed records (what a user reads or runs)."""
    files = [ROOT / name for name in ("README.md", "Snakefile", "params.yaml", "dvc.yaml")]
    files += sorted(p for p in (ROOT / "docs").rglob("*") if p.is_file())
    files += sorted((ROOT / "gnerv").rglob("*.py"))
    for folder in ("workflow", "configs", "benchmarks"):
        files += sorted(
            p
            for p in (ROOT / folder).rglob("*")
            if p.is_file()
            and p.suffix in {".py", ".sh", ".smk", ".yaml", ".json", ".md", ""}
            and "out" not in p.relative_to(ROOT / folder).parts
        )
    return files


def test_records_name_no_machines_folders():
    """A committed record gives paths relative to the repository (benchmarks/record.py's
    `portable`): an absolute path would name the measuring machine's folders."""
    import json

    def strings(value: object) -> list[str]:
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    for record in sorted((ROOT / "benchmarks" / "records").glob("*.json")):
        absolute = [s for s in strings(json.loads(record.read_text())) if s.startswith("/")]
        assert not absolute, f"{record.name}: absolute paths {absolute[:3]}"


def text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:  # images and other binary files under docs/
        return []


def hits_in_line(line: str) -> list[str]:
    """The offending words of one line (empty when it is clean)."""
    plain = LINK_TARGET.sub("]()", URL.sub(" ", line))
    spans: list[tuple[int, int, str]] = []
    for pattern in (ISSUE_WORD, ISSUE_NUMBER, DEV_WORDS):
        for m in pattern.finditer(plain):
            if not any(a < m.end() and m.start() < b for a, b, _ in spans):  # once per place
                spans.append((m.start(), m.end(), m.group(0)))
    return [word for _, _, word in sorted(spans)]


def find_hits(files: list[Path]) -> list[str]:
    hits = []
    for path in files:
        for number, line in enumerate(text_lines(path), start=1):
            for word in hits_in_line(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {word!r}")
    return hits


def test_the_patterns_hit_what_they_should():
    for line in [
        "as issue #17 asks",
        "(#18)",
        "Against the targets of #18:",
        "see issue 14",
        "Issues #13 and",
        "the 2-core dev VM",
        "on the dev machines",
        "`farm-bench -n 3`",
        "cp /work/shared/data/bunny.mkv .",
        "--bunny ../shared/data/bunny.mkv",
        "not measured in this session",
        "2026-12-03, second session",
        "with other engineers' test runs",
        "once it held the shared CPU lock",
        "(`flock /tmp/gnerv-cpu.lock`)",
        "in the sandbox",
    ]:
        assert hits_in_line(line), line


def test_the_patterns_leave_legitimate_text_alone():
    for line in [
        "# a comment in a code block",
        "#!/usr/bin/env bash",
        "color = '#1f77b4'",
        "edgecolor='#000000'",
        "see [model.md](model.md#the-time-branch-ablation-paper-43)",
        "<https://github.com/haochen-rye/HNeRV#12>",
        "x[:, 0] += 1  # 3 channels",
        "the issue with a small model",
        "decoded PSNR of the session's frames",
        "&#8212;",
        "a 3-stage pipeline, stage #",
        "dvc.lock records the outputs",
        "Directory cannot be locked",
    ]:
        assert not hits_in_line(line), (line, hits_in_line(line))


def test_readme_docs_and_package_speak_of_the_project_only():
    hits = find_hits(checked_files())
    assert not hits, "words from outside the project:\n" + "\n".join(hits)


def test_measured_tables_match_their_records():
    """Every table marked `<!-- table: NAME RECORD -->` in README.md and docs/ is what
    benchmarks/render_tables.py renders from its committed JSON record."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "render_tables.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    marked = [p for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
              if "<!-- table: " in p.read_text()]  # fmt: skip
    assert marked, "no doc table is rendered from a record"


# Tables in the docs that hold no measured figure: layouts, fields, limits, file lists and the
# paper's own figures (quoted, not measured here). Any other table is a measurement and must sit
# between `<!-- table: NAME RECORD -->` markers, rendered from its record.
DESCRIPTIVE_TABLES = {
    "| ablation | paper | files | built from |",
    "| Channel Number | 20 | 40 | 80 | 152 | 223 | 304 |",  # the paper's Table 4
    "| offset | size | field |",
    "| field | meaning and check |",
    "| limit | default | `gnerv decode` flag |",
    "| version | what changed | read by this version |",
    "| tensor | shape | channels (one min/max pair each) |",
    "| part | paper | here |",
    "| reading differs in | pinned by |",
    "| module | what it holds |",
    "| file | what to add |",
    "| section | what runs | prints / records |",
    "| file | what |",
}


def unmarked_tables(text: str) -> list[tuple[int, str]]:
    """(line, header) of each Markdown table outside the record markers."""
    found, inside, previous = [], False, ""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("<!-- table: "):
            inside = True
        elif line.startswith("<!-- end table"):
            inside = False
        elif line.startswith("|") and not inside and not previous.startswith("|"):
            found.append((number, line.strip()))
        previous = line
    return found


def test_unmarked_tables_hold_no_measurements():
    """A table outside the markers is one of the descriptive ones; a measured table comes from
    its record (so a figure cannot be typed into a doc by hand)."""
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    stray = [
        f"{doc.relative_to(ROOT)}:{number}: {header}"
        for doc in docs
        for number, header in unmarked_tables(doc.read_text())
        if header not in DESCRIPTIVE_TABLES
    ]
    assert not stray, "tables with no record behind them:\n" + "\n".join(stray)


def test_unmarked_tables_finds_tables_outside_the_markers_only():
    text = "\n".join(
        [
            "| a | b |",
            "| --- | --- |",
            "| 1 | 2 |",
            "",
            "<!-- table: demo benchmarks/records/demo.json -->",
            "| c | d |",
            "<!-- end table -->",
            "| e | f |",
        ]
    )
    assert unmarked_tables(text) == [(1, "| a | b |"), (8, "| e | f |")]
