"""Per-epoch callbacks the sweep tests hand to worker processes (picklable, importable by name).

Each acts on one cell (by its label) and at most once (a marker file remembers), so a
retried or resumed attempt of that cell runs normally.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


class _Once:
    def __init__(self, label: str, epoch: int, marker: Path) -> None:
        self.label, self.epoch, self.marker = label, epoch, str(marker)

    def due(self, record, history) -> bool:
        if history.label != self.label or record.epoch != self.epoch or os.path.exists(self.marker):
            return False
        Path(self.marker).write_text(str(os.getpid()))
        return True


class KillOnce(_Once):
    """SIGKILL the process training the cell right after it saved `epoch` (a dying worker)."""

    def __call__(self, record, history) -> None:
        if self.due(record, history):
            os.kill(os.getpid(), signal.SIGKILL)


class InterruptOnce(_Once):
    """Ctrl-C in the middle of the sweep, after the cell saved `epoch`."""

    def __call__(self, record, history) -> None:
        if self.due(record, history):
            raise KeyboardInterrupt


class Fail:
    """The cell fails at its first epoch, every time."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __call__(self, record, history) -> None:
        if history.label == self.label:
            raise RuntimeError(f"simulated failure of {self.label}")


class RecordWorker:
    """Write the worker's GPU pinning and thread count to FOLDER/LABEL.PID.json (once per process)."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)

    def __call__(self, record, history) -> None:
        import json

        import torch

        path = Path(self.folder) / f"{history.label}.{os.getpid()}.json"
        if not path.exists():
            path.write_text(json.dumps({"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                        "threads": torch.get_num_threads()}))
