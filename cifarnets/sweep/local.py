"""The ``local`` engine: cells one after another in this process, or N at once in worker processes.

With ``parallel=N`` every cell runs in a fresh worker process (spawned, so CUDA is safe), at
most N at a time. Worker slot ``k`` is pinned to GPU ``k mod #GPUs`` (``CUDA_VISIBLE_DEVICES``)
when there are GPUs, and trains with the CPU threads its cell's config says (1 unless the grid sets
``threads``). A worker that dies (killed,
out of memory) has its cell started again, up to `retries` times; the new attempt resumes
from the cell's last saved epoch.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from .cell import CellOutcome, run_cell, write_status
from .grid import Cell

__all__ = ["run_local"]

logger = logging.getLogger(__name__)

Progress = Callable[[str, Cell, Optional[CellOutcome]], None]


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_local(cells: Sequence[Cell], sweep_dir: Path, *, parallel: int, runtime: Mapping[str, Any],
              callbacks: Sequence[Callable[..., None]], retries: int,
              progress: Optional[Progress]) -> list[CellOutcome]:
    """Run `cells`; return their outcomes in grid order."""
    notify = progress or (lambda kind, cell, outcome: None)
    if parallel <= 1:
        outcomes = []
        for cell in cells:
            notify("start", cell, None)
            outcome = run_cell(cell, sweep_dir, runtime=runtime, callbacks=callbacks)
            notify(outcome.status, cell, outcome)
            outcomes.append(outcome)
        return outcomes
    return _run_pool(cells, sweep_dir, parallel, runtime, callbacks, retries, notify)


def _worker(cell: dict[str, Any], sweep_dir: str, runtime: dict[str, Any], callbacks: Sequence[Callable[..., None]],
            gpu: Optional[int], conn: Any) -> None:
    """A worker process: pin to its GPU, run one cell (with the threads its config says), send its outcome back."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    outcome = run_cell(Cell.from_dict(cell), sweep_dir, runtime=runtime, callbacks=callbacks)
    conn.send(outcome.to_dict())
    conn.close()


def _run_pool(cells: Sequence[Cell], sweep_dir: Path, parallel: int, runtime: Mapping[str, Any],
              callbacks: Sequence[Callable[..., None]], retries: int, notify: Progress) -> list[CellOutcome]:
    ctx = mp.get_context("spawn")
    gpus = _gpu_count()
    pending = deque(cells)
    attempts: dict[str, int] = {}
    outcomes: dict[str, CellOutcome] = {}
    free = list(range(parallel))
    running: dict[int, tuple[Any, Any, Cell, int]] = {}  # sentinel -> (process, connection, cell, slot)
    try:
        while pending or running:
            while pending and free:
                slot, cell = free.pop(0), pending.popleft()
                attempts[cell.name] = attempts.get(cell.name, 0) + 1
                receive, send = ctx.Pipe(duplex=False)
                gpu = slot % gpus if gpus else None
                proc = ctx.Process(target=_worker, name=f"cifarnets-sweep-{slot}",
                                   args=(cell.to_dict(), str(sweep_dir), dict(runtime), list(callbacks), gpu,
                                         send))
                proc.start()
                send.close()
                running[proc.sentinel] = (proc, receive, cell, slot)
                notify("start", cell, None)
            for sentinel in wait(list(running)):
                proc, receive, cell, slot = running.pop(sentinel)  # type: ignore[index,arg-type]
                proc.join()
                free.append(slot)
                outcome = None
                if receive.poll():
                    try:
                        outcome = CellOutcome(**receive.recv())
                    except EOFError:
                        outcome = None
                receive.close()
                if outcome is not None:
                    outcomes[cell.name] = outcome
                    notify(outcome.status, cell, outcome)
                elif attempts[cell.name] <= retries:
                    logger.warning("the worker of %s died (exit code %s); starting it again (attempt %d of %d), "
                                   "resuming from its last saved epoch", cell.name, proc.exitcode,
                                   attempts[cell.name] + 1, retries + 1)
                    notify("retry", cell, None)
                    pending.appendleft(cell)
                else:
                    error = (f"its worker process died (exit code {proc.exitcode}) {attempts[cell.name]} time(s); "
                             "the run folder keeps its last saved epoch and a rerun resumes it")
                    write_status(sweep_dir, cell.name, status="failed", error=error)
                    outcomes[cell.name] = CellOutcome(cell.name, "failed", error=error)
                    notify("failed", cell, outcomes[cell.name])
    finally:
        for proc, receive, _, _ in running.values():
            proc.terminate()
            proc.join()
            receive.close()
    return [outcomes[c.name] for c in cells]
