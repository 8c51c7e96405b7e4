"""VGG08 with one input channel learns the real Fashion-MNIST in one epoch (>= 80 % test accuracy).

The one real image data set on the build machine (Debian's dataset-fashion-mnist).
The recipe is chosen for a short CPU run that passes with a margin, not to reproduce a report:
one epoch over a class-stratified 20,000-image subset, Adam 3e-3 with a per-step cosine to 0,
batch 50, no augmentation (one pass does not profit from it), and VGG08 with BN in its blocks
(``bn=True``: the plain coursework VGG08 learns much more slowly at this budget, about 66 %
after 10,000 images). Evaluated on all 10,000 test images.
"""

from __future__ import annotations

import time

import pytest
from data_helpers import needs_fashion_mnist

from cifarnets.data import load_dataset
from cifarnets.train import TrainConfig, fit

pytestmark = [needs_fashion_mnist(), pytest.mark.slow]


def test_vgg08_one_channel_one_epoch_reaches_80_percent(tmp_path):
    started = time.perf_counter()
    data = load_dataset("fashion_mnist", split="none", limit=20000)
    assert data.in_chans == 1 and data.num_classes == 10 and len(data.test) == 10000
    config = TrainConfig(epochs=1, batch_size=50, optimizer="adam", lr=3e-3, schedule="cosine", schedule_unit="step",
                         augment=False, eval_batch_size=1000, quiet=True, out_dir=str(tmp_path / "run"))
    history = fit("vgg08", data, config, model_kwargs={"bn": True})
    seconds = time.perf_counter() - started
    record = history.epochs[0]
    print(f"Fashion-MNIST: test {history.test['acc']:.2f} % after one epoch of {len(data.train)} images "
          f"({record.train_seconds:.0f} s training, {seconds:.0f} s in all, {record.images_per_second:.0f} img/s)")
    assert history.model == "vgg08" and history.model_kwargs == {"bn": True, "in_chans": 1, "num_classes": 10}
    assert history.name == "vgg08 bn"
    assert history.test["n"] == 10000
    assert history.test["acc"] >= 80.0, history.test
