"""Run a sweep and record what it cost, so that the committed result files say how they were made.

    python benchmarks/record_results.py examples/grids/seed001_vgg38_bn_rc_budget.toml --out /tmp/seed001 \\
        -- --parallel 2
    cifarnets plot /tmp/seed001 --results results/seed001_vgg38_bn_rc_budget.json

The first command runs ``cifarnets sweep GRID --out DIR [ARGS]`` as a child process and writes
``DIR/measurement.json``: the date, the machine (platform, CPU count), the Python and torch
versions, the command, its wall time, the CPU seconds (user + system) of the sweep and every
process it started (``resource.getrusage``: the children's and this process's own), and the
load average at the start and the end (other jobs on a shared machine slow a sweep down; the
load says how busy it was). The second puts that beside the measured statistics of every seed
group in the result file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

MEASUREMENT = "measurement.json"


def _cpu_seconds() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _cpu_model() -> str:
    """The processor's name as the kernel reports it (``platform.processor()`` says only "x86_64" on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("grid", type=Path, help="grid file")
    p.add_argument("--out", required=True, type=Path, help="sweep folder")
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after "--" goes to `cifarnets sweep` unread (argparse would take its options as ours).
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.sweep_args = extra

    import torch  # only for its version; the sweep runs in the child

    command = [sys.executable, "-m", "cifarnets", "sweep", str(args.grid), "--out", str(args.out), *args.sweep_args]
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    cpu_start = _cpu_seconds()
    t0 = time.perf_counter()
    rc = subprocess.call(command)
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu_start
    load_end = os.getloadavg()
    record = {
        "date": started.isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "command": ["cifarnets", *command[3:]],
        "returncode": rc,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / (MEASUREMENT + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, args.out / MEASUREMENT)
    print(json.dumps(record, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main())
