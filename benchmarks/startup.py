"""Start-up time of ``import cifarnets`` and the light commands, against ``import torch``.

Each case runs in a fresh subprocess (nothing cached in the interpreter), the cases interleaved
(A B C ... A B C ...) so that a change in the machine's load hits all of them alike, after one
warm-up round that is not counted (it fills the OS file cache). Prints, per case, the median
and min-max wall time, and the median's ratio to ``import torch``'s, with the targets:
``import cifarnets`` <= 1.5x, each command <= 1.3x. The load average before and after says how
busy the machine was (on a shared machine, rerun when it is high).

    python benchmarks/startup.py              # 7 rounds
    python benchmarks/startup.py --rounds 11

Run it from the repository root (it puts the root first on PYTHONPATH, so the working tree is
what is measured).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "cifarnets"]

# (label, command, target ratio to `import torch`; None for the baseline itself)
CASES: list[tuple[str, list[str], float | None]] = [
    ("python -c 'import torch'", [sys.executable, "-c", "import torch"], None),
    ("python -c 'import cifarnets'", [sys.executable, "-c", "import cifarnets"], 1.5),
    ("cifarnets --help", [*CLI, "--help"], 1.3),
    ("cifarnets --version", [*CLI, "--version"], 1.3),
    ("cifarnets list", [*CLI, "list"], 1.3),
    ("cifarnets info vgg38", [*CLI, "info", "vgg38"], 1.3),
]


def _run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(rounds: int) -> tuple[dict[str, list[float]], tuple[float, float, float], tuple[float, float, float]]:
    """Wall times per case over `rounds` interleaved rounds (after a warm-up), and the load before/after."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path}
    load_before = os.getloadavg()
    for _, command, _ in CASES:  # warm-up round, not counted
        _run(command, env)
    times: dict[str, list[float]] = {label: [] for label, _, _ in CASES}
    for _ in range(rounds):
        for label, command, _ in CASES:
            times[label].append(_run(command, env))
    return times, load_before, os.getloadavg()


def table(times: dict[str, list[float]]) -> str:
    """The Markdown table of median, min-max, ratio to ``import torch`` and the target."""
    base = statistics.median(times[CASES[0][0]])
    rows = ["| case | median (s) | min-max (s) | x import torch | target |", "|---|--:|--:|--:|---|"]
    for label, _, target in CASES:
        values = times[label]
        median = statistics.median(values)
        ratio = median / base
        verdict = "baseline" if target is None else f"<= {target}x: {'met' if ratio <= target else 'NOT met'}"
        rows.append(f"| `{label}` | {median:.2f} | {min(values):.2f}-{max(values):.2f} | {ratio:.2f} | {verdict} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds after the warm-up (at least 5)")
    args = parser.parse_args()
    if args.rounds < 5:
        parser.error("--rounds must be at least 5")
    times, before, after = measure(args.rounds)
    print(f"{args.rounds} interleaved rounds after 1 warm-up round, {sys.executable}")
    print(table(times))
    print(f"load average (1, 5, 15 min): before {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}, "
          f"after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
