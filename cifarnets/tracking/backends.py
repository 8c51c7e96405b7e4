"""The four trackers: TensorBoard, MLflow, W&B and CSV files, all writing under the run folder by default.

Each tracker imports its package when it is built (by `make_trackers`), never at module level, so
``import cifarnets`` stays as fast without them, and a missing package is a `ConfigError` before
training starts. Where each one writes (``run_dir`` is the run folder):

- tensorboard: ``run_dir/tb/`` (event files; the run's settings in the HParams tab);
- mlflow: the store ``MLFLOW_TRACKING_URI`` names, else ``sqlite:///run_dir/mlflow.db`` with the
  artefacts in ``run_dir/mlartifacts/`` (MLflow 3 refuses its old ``./mlruns`` file store unless told
  to: SQLite is the local store it recommends); experiment ``MLFLOW_EXPERIMENT_NAME`` or "cifarnets";
- wandb: ``run_dir/wandb/``, offline unless ``WANDB_MODE`` says otherwise (``wandb sync`` uploads
  it later); project ``WANDB_PROJECT`` or "cifarnets";
- csv: ``run_dir/metrics.csv`` (one row per metric value: step, epoch, name, value, time) and
  ``run_dir/hparams.csv`` (name, value).
"""

from __future__ import annotations

import csv
import io
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .._utils import atomic_write
from ..errors import ConfigError
from .api import STATUSES, Tracker, check_tracker_names, flatten_hparams, missing_package

# Metrics the TensorBoard HParams tab shows next to the settings.
HPARAM_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc")
METRICS_CSV, HPARAMS_CSV, CSV_COLUMNS = "metrics.csv", "hparams.csv", ("step", "epoch", "name", "value", "time")


def require_run_dir(tracker: str, run_dir: Optional[Path]) -> Path:
    """The run folder (created if needed) a tracker writes into; a run without one cannot have that tracker."""
    if run_dir is None:
        raise ConfigError(f"the {tracker} tracker writes into the run folder and this run has none: give the "
                          f"run a folder or leave {tracker} out of the trackers")
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise ConfigError(f"unknown run status {status!r}; choose from {', '.join(STATUSES)}")
    return status


class CsvTracker:
    """Metrics as rows of ``run_dir/metrics.csv`` and the settings in ``run_dir/hparams.csv``.

    Each `log_metrics` call is written as whole lines in one write and flushed, so a crash leaves at
    most one torn last line; `read_metrics_csv` ignores it and a resumed run cuts it off.
    """

    name = "csv"

    def __init__(self) -> None:
        self._file: Optional[io.TextIOWrapper] = None

    def start(self, run_dir: Optional[Path], name: str, hparams: Mapping[str, Any], *,
              resume: bool = False) -> None:
        folder = require_run_dir(self.name, run_dir)
        atomic_write(folder / HPARAMS_CSV, _csv_text([("name", "value"), *flatten_hparams(hparams).items()]))
        path = folder / METRICS_CSV
        if resume and path.exists():
            _drop_torn_tail(path)
        self._file = open(path, "a" if resume else "w", newline="", encoding="utf-8")
        if self._file.tell() == 0:
            self._write([CSV_COLUMNS])

    def _write(self, rows: Sequence[Sequence[Any]]) -> None:
        assert self._file is not None, "start the tracker first"
        self._file.write(_csv_text(rows))
        self._file.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int, *, epoch: Optional[int] = None) -> None:
        now = f"{time.time():.3f}"
        self._write([(step, "" if epoch is None else epoch, key, repr(float(value)), now)
                     for key, value in metrics.items()])

    def log_image(self, tag: str, png_path: Path, step: int) -> None:
        """Nothing: a CSV file holds no pictures (the run folder keeps the PNG itself)."""

    def finish(self, status: str) -> None:
        _check_status(status)
        if self._file is not None:
            self._file.close()
            self._file = None


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line that a crash left without its newline, so appended rows start on a line of their own."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def read_metrics_csv(path: Union[str, Path]) -> list[dict[str, Any]]:
    """The rows of a `CsvTracker` file as dicts (step and epoch as int or None, value and time as float),
    without a torn last line that a crash left behind."""
    text = Path(path).read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append({"step": int(row["step"]), "epoch": int(row["epoch"]) if row["epoch"] else None,
                     "name": row["name"], "value": float(row["value"]), "time": float(row["time"])})
    return rows


class TensorBoardTracker:
    """Scalars, images and the HParams tab in ``run_dir/tb/`` through torch's `SummaryWriter`."""

    name = "tensorboard"

    def __init__(self) -> None:
        try:
            import tensorboard  # noqa: F401  (first, so a missing package is named as itself)
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams
        except ImportError as error:
            raise missing_package(self.name, error, "tensorboard", "tensorboard") from None
        self._writer_class, self._hparams = SummaryWriter, hparams
        self._writer: Any = None

    def start(self, run_dir: Optional[Path], name: str, hparams: Mapping[str, Any], *,
              resume: bool = False) -> None:
        folder = require_run_dir(self.name, run_dir)
        self._writer = self._writer_class(log_dir=str(folder / "tb"), flush_secs=30)
        # What SummaryWriter.add_hparams writes, but into this run's own file rather than a sub-run.
        for summary in self._hparams(flatten_hparams({"run": name, **hparams}), dict.fromkeys(HPARAM_METRICS, 0.0)):
            self._writer.file_writer.add_summary(summary)
        self._writer.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int, *, epoch: Optional[int] = None) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, float(value), step)
        if epoch is not None:
            self._writer.add_scalar("epoch", epoch, step)
            self._writer.flush()  # per epoch, so a crash loses at most the steps since

    def log_image(self, tag: str, png_path: Path, step: int) -> None:
        import numpy as np
        from PIL import Image  # matplotlib's dependency, so always there

        with Image.open(png_path) as image:
            pixels = np.asarray(image.convert("RGB"))
        self._writer.add_image(tag, pixels, step, dataformats="HWC")
        self._writer.flush()

    def finish(self, status: str) -> None:
        self._writer.add_text("status", _check_status(status))
        self._writer.close()


class MlflowTracker:
    """An MLflow run: the settings as params, metrics per step, pictures through `log_image`.

    A resumed run continues the MLflow run tagged with the same run folder (``cifarnets.run_dir``).
    """

    name = "mlflow"
    STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}

    def __init__(self) -> None:
        try:
            from mlflow.entities import Metric, Param
            from mlflow.tracking import MlflowClient

            if not os.environ.get("MLFLOW_TRACKING_URI"):
                import alembic  # noqa: F401  (the local SQLite store needs both)
                import sqlalchemy  # noqa: F401
        except ImportError as error:
            raise missing_package(self.name, error, "mlflow", "mlflow") from None
        self._client_class, self._metric, self._param = MlflowClient, Metric, Param
        self._client: Any = None
        self.run_id: Optional[str] = None

    def start(self, run_dir: Optional[Path], name: str, hparams: Mapping[str, Any], *,
              resume: bool = False) -> None:
        uri, artifacts = os.environ.get("MLFLOW_TRACKING_URI"), None
        if not uri:
            folder = require_run_dir(self.name, run_dir).resolve()
            uri, artifacts = f"sqlite:///{folder / 'mlflow.db'}", (folder / "mlartifacts").as_uri()
        self._client = client = self._client_class(tracking_uri=uri)
        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "cifarnets"
        experiment = client.get_experiment_by_name(experiment_name)
        experiment_id = experiment.experiment_id if experiment else \
            client.create_experiment(experiment_name, artifact_location=artifacts)
        key = str(Path(run_dir).resolve()) if run_dir is not None else None
        self.run_id, logged = None, {}
        if resume and key is not None and "'" not in key:
            found = client.search_runs([experiment_id], filter_string=f"tags.`cifarnets.run_dir` = '{key}'",
                                       order_by=["attributes.start_time DESC"], max_results=1)
            if found:
                self.run_id, logged = found[0].info.run_id, found[0].data.params
                client.update_run(self.run_id, status="RUNNING")
        if self.run_id is None:
            self.run_id = client.create_run(experiment_id, run_name=name,
                                            tags={"cifarnets.run_dir": key} if key else {}).info.run_id
        # A param cannot change once logged: a resumed run logs only the new ones.
        params = [self._param(k, str(v)[:6000]) for k, v in flatten_hparams(hparams).items() if k not in logged]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(self.run_id, params=params[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int, *, epoch: Optional[int] = None) -> None:
        now = int(time.time() * 1000)
        rows = [self._metric(key, float(value), now, step) for key, value in metrics.items()]
        if epoch is not None:
            rows.append(self._metric("epoch", float(epoch), now, step))
        for i in range(0, len(rows), 1000):  # at most 1000 metrics per batch
            self._client.log_batch(self.run_id, metrics=rows[i:i + 1000])

    def log_image(self, tag: str, png_path: Path, step: int) -> None:
        from PIL import Image  # matplotlib's dependency, so always there

        with Image.open(png_path) as image:
            self._client.log_image(self.run_id, image.convert("RGB"), key=tag, step=step)

    def finish(self, status: str) -> None:
        self._client.set_terminated(self.run_id, self.STATUS[_check_status(status)])


class WandbTracker:
    """A W&B run in ``run_dir/wandb/``, offline unless ``WANDB_MODE`` is set; silent (no console output).

    Metrics are plotted against ``global_step`` (logged with each call), so per-step and per-epoch
    calls never trip W&B's rule that its own step only grows. A resumed run keeps its W&B id
    (``run_dir/wandb/cifarnets-run-id``).
    """

    name = "wandb"
    EXIT_CODE = {"finished": 0, "failed": 1, "interrupted": 255}
    ID_FILE = "cifarnets-run-id"

    def __init__(self) -> None:
        try:
            import wandb
        except ImportError as error:
            raise missing_package(self.name, error, "wandb", "wandb") from None
        self._wandb = wandb
        self._run: Any = None

    def start(self, run_dir: Optional[Path], name: str, hparams: Mapping[str, Any], *,
              resume: bool = False) -> None:
        wandb, folder, run_id = self._wandb, None, None
        if run_dir is not None:
            folder = Path(run_dir) / "wandb"
            folder.mkdir(parents=True, exist_ok=True)
            if resume and (folder / self.ID_FILE).is_file():
                run_id = (folder / self.ID_FILE).read_text().strip()
        options = {} if os.environ.get("WANDB_MODE") else {"mode": "offline"}
        self._run = run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "cifarnets", name=name, id=run_id or secrets.token_hex(6),
            resume="allow", dir=str(run_dir) if run_dir is not None else None, reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"), **options)
        if folder is not None:
            atomic_write(folder / self.ID_FILE, run.id + "\n")
        run.config.update(flatten_hparams(hparams), allow_val_change=True)  # a resume may change a setting
        run.define_metric("global_step")
        run.define_metric("*", step_metric="global_step")

    def log_metrics(self, metrics: Mapping[str, float], step: int, *, epoch: Optional[int] = None) -> None:
        row: dict[str, Any] = {key: float(value) for key, value in metrics.items()}
        if epoch is not None:
            row["epoch"] = epoch
        self._run.log({**row, "global_step": step})

    def log_image(self, tag: str, png_path: Path, step: int) -> None:
        self._run.log({tag: self._wandb.Image(str(png_path)), "global_step": step})

    def finish(self, status: str) -> None:
        self._run.finish(exit_code=self.EXIT_CODE[_check_status(status)])


BACKENDS: dict[str, Callable[[], Tracker]] = {
    "tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker, "csv": CsvTracker,
}


def make_trackers(names: Union[str, Sequence[str], None]) -> list[Tracker]:
    """The trackers named (``"tensorboard,mlflow,wandb,csv"``, a list, or None for none), each with its
    package imported now, so that a missing package is a `ConfigError` naming the extra to install
    before training starts.

    >>> [t.name for t in make_trackers("csv")]
    ['csv']
    """
    return [BACKENDS[name]() for name in check_tracker_names(names)]
