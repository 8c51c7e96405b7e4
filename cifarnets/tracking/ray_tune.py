"""The trackers as Ray Tune logger callbacks, for the Ray engine of ``cifarnets sweep``.

Under Ray, Tune itself logs each trial's reported results; `ray_callbacks` turns tracker names into
its callbacks, with the same local defaults as the trackers: MLflow in ``root/mlflow.db`` (artefacts
in ``root/mlartifacts``) unless ``MLFLOW_TRACKING_URI`` is set, W&B offline under ``root`` unless
``WANDB_MODE`` is set. Ray is imported only when this is called.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from ..errors import ConfigError
from .api import check_tracker_names, missing_package


def ray_callbacks(names: Union[str, Sequence[str], None], root: Optional[Path] = None) -> list[Any]:
    """Ray Tune callbacks for the named trackers (pass them as ``RunConfig(callbacks=...)``).

    ``root`` is the sweep's folder: where the local MLflow store and the W&B files go (both need it
    unless their environment variable points elsewhere). "tensorboard" and "csv" are Tune's own
    `TBXLoggerCallback` and `CSVLoggerCallback`, which write into each trial's folder.
    """
    wanted = check_tracker_names(names)
    try:
        from ray.tune.logger import CSVLoggerCallback, TBXLoggerCallback
    except ImportError as error:
        raise missing_package("Ray Tune", error, "sweep", "ray") from None
    callbacks: list[Any] = []
    for name in wanted:
        if name == "tensorboard":
            try:
                import tensorboardX  # noqa: F401  (Tune's TensorBoard logger writes with it)
            except ImportError as error:
                raise missing_package("Ray Tune tensorboard", error, "sweep", "tensorboardX") from None
            callbacks.append(TBXLoggerCallback())
        elif name == "csv":
            callbacks.append(CSVLoggerCallback())
        elif name == "mlflow":
            callbacks.append(_mlflow_callback(root))
        elif name == "wandb":
            callbacks.append(_wandb_callback(root))
    return callbacks


def _need_root(tracker: str, root: Optional[Path]) -> Path:
    if root is None:
        raise ConfigError(f"the {tracker} tracker under Ray writes into the sweep folder: pass root=")
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(root).resolve()


def _mlflow_callback(root: Optional[Path]) -> Any:
    from .backends import MlflowTracker

    MlflowTracker()  # a missing package is named here, as for the trackers
    from mlflow.tracking import MlflowClient
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "cifarnets"
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        folder = _need_root("mlflow", root)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=uri)
        # Created here so that the artefacts land in the sweep folder, not in the working directory.
        if client.get_experiment_by_name(experiment) is None:
            client.create_experiment(experiment, artifact_location=(folder / "mlartifacts").as_uri())
    return MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment)


def _wandb_callback(root: Optional[Path]) -> Any:
    from .backends import WandbTracker

    WandbTracker()
    from ray.air.integrations.wandb import WandbLoggerCallback

    options: dict[str, Any] = {} if os.environ.get("WANDB_MODE") else {"mode": "offline"}
    if root is not None or "mode" in options:
        options["dir"] = str(_need_root("wandb", root))
    return WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT") or "cifarnets",
                               settings={"silent": True, "console": "off"}, **options)
