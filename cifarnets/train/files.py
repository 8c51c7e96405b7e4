"""The names of a run folder's files, declared once. `cifarnets.train.RunDir` reads and writes them;
`History.load` and `load_checkpoint` find them inside a folder by these names."""

from __future__ import annotations

__all__ = ["BEST", "CONFIG", "HISTORY_CSV", "HISTORY_JSON", "LAST", "LOCK", "RUN_FILES", "STATE", "STATUS", "TEST"]

CONFIG = "config.json"              # the run's description: model, data source, TrainConfig, run id
STATE = "last.state.pt"             # THE checkpoint (checksummed, bound to the run)
LAST = "last.safetensors"           # the weights of that epoch, for other tools
BEST = "best.safetensors"           # the weights of the best epoch
HISTORY_JSON = "history.json"       # every finished epoch
HISTORY_CSV = "history.csv"         # the same as a table
TEST = "test.json"                  # the best weights on the test set, once training ends
LOCK = ".lock"                      # held (flock) while a process trains in the folder
STATUS = "status.json"              # how the last attempt went (failed, interrupted; a sweep's attempts)
RUN_FILES = (CONFIG, HISTORY_JSON, HISTORY_CSV, LAST, STATE, BEST, TEST)
