"""Seed 004: AlexNet vs VGG-16 (with and without BN) vs VGG-8 on CIFAR-10 (Tables 5-7).

Published set-up (SPEC §2): all 50,000 CIFAR-10 training images (no validation split),
10,000 test, random crop (pad 4) and flip, normalisation with the true std
(0.2470, 0.2435, 0.2616) (``norm="cifar10"``), SGD lr 0.01 momentum 0.9 weight decay 5e-4
(coupled), cosine annealing, batch 128; 5 and 40 epochs (two separate runs per model, each
with its cosine over its own length). Test accuracy is that of the last epoch (no val
split: the last epoch is the kept one).

Registry names: the report's "VGG-8" is ``vgg8_classic`` (13.1 M parameters), not the
coursework ``vgg08``; AlexNet is ``alexnet_cifar``.

    python examples/seed004_alexnet_vgg.py --download   # the full grid (GPU: about an hour)
    python examples/seed004_alexnet_vgg.py --budget     # a few minutes on a CPU
"""

from __future__ import annotations

import sys

from _common import Column, Run, main, published, test_acc

BASE = dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="cosine", batch_size=128)

# (label, model, test acc 5 / 40 epochs, s/epoch 5 / 40 epochs)
_PUBLISHED = [
    ("AlexNet", "alexnet_cifar", (56.84, 87.81), (25.48, 36.09)),
    ("VGG-16", "vgg16", (10.00, 10.00), (30.89, 47.08)),
    ("VGG-16 BN", "vgg16_bn", (83.86, 91.94), (31.55, 50.20)),
    ("VGG-8", "vgg8_classic", (27.75, 88.32), (25.13, 37.97)),
]
RUNS = [
    Run(f"{label} {epochs} epochs", model, config=dict(epochs=epochs), group=str(epochs),
        published=dict(test_acc=acc[i], seconds=sec[i]))
    for i, epochs in enumerate((5, 40)) for label, model, acc, sec in _PUBLISHED
]


def _params_per_point(run, history):
    acc = history.test["acc"] if history.test else None
    return f"{history.params / acc / 1000:,.0f}K" if acc else None


COLUMNS = [
    Column("model", lambda r, h: r.label.rsplit(" ", 2)[0]),
    Column("epochs", lambda r, h: len(h.epochs)),
    Column("params", lambda r, h: f"{h.params / 1e6:.1f}M"),
    Column("test acc", test_acc),
    Column("s/epoch", lambda r, h: sum(e.epoch_seconds for e in h.epochs) / len(h.epochs)),
    Column("params per % acc", _params_per_point),
    Column("published test acc", published("test_acc")),
    Column("published s/epoch", published("seconds")),
]

if __name__ == "__main__":
    sys.exit(main(
        __doc__, "runs/seed004", dataset="cifar10", split=None, norm="cifar10", base=BASE, runs=RUNS,
        columns=COLUMNS, title="Seed 004, Tables 5-7: AlexNet and VGGs on CIFAR-10",
        budget_sizes=(256, 0, 250), budget_epochs=lambda epochs: 1 if epochs <= 5 else 2,
        note="Published s/epoch were measured on the report's GPU; compare ratios between models.",
    ))
