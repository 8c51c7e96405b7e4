"""Suite-wide settings: for the tests in tests/ and the docstring examples in cifarnets/ alike."""

from __future__ import annotations

import matplotlib
import torch

# Pictures are written to files, never shown.
matplotlib.use("Agg")

# The tests run many small CPU batches, two pytest-xdist workers on CI's two cores: a second
# intra-op thread per worker only adds contention (vgg38 forward/backward: 0.05 s with one
# thread against 2-4 s with two competing ones on a shared 2-core box).
torch.set_num_threads(1)
