"""Seed 000: hyperparameter tuning and custom batch norm for ResNet-18 on CIFAR-10 (Tables 1-4).

Published set-up (SPEC §2): CIFAR-10 split 40,000/10,000/10,000, random crop 32 (pad 4) and
horizontal flip, normalisation with the widely copied std (0.2023, 0.1994, 0.2010)
(``norm="cifar10_seed000"``), SGD momentum 0.9, batch 128, cross-entropy.

=======  ===================================================  ========
table    runs                                                 epochs
=======  ===================================================  ========
1        lr 1e-3, 1e-2, 1e-1; constant lr, no weight decay    15
2        lr 1e-2 constant vs cosine annealing                 300
3        lr 1e-2, cosine, weight decay 5e-4 vs 1e-2           300
4        as the best run, with the "custom" batch norm whose  300
         batch statistics are detached from autograd
=======  ===================================================  ========

The report does not state the weight decay of Tables 1-2 (taken as 0, the SPEC's
"wd {0, 5e-4, 1e-2}") nor the settings of Table 4 (taken as its best run: lr 1e-2, cosine,
wd 1e-2). Its weight decay is coupled L2 (``torch.optim.SGD(weight_decay=)``).

    python examples/seed000_resnet18_hparams.py --download          # the full grid (GPU: hours)
    python examples/seed000_resnet18_hparams.py --budget            # a few minutes on a CPU
"""

from __future__ import annotations

import sys

from _common import Column, Run, final, main, published, test_acc

BASE = dict(optimizer="sgd", momentum=0.9, batch_size=128, schedule="none", weight_decay=0.0)

RUNS = [
    Run("T1 lr 1e-3", "resnet18", config=dict(lr=1e-3, epochs=15), group="1",
        published=dict(train_acc=85.93, val_acc=80.28, train_loss=0.4049, val_loss=0.5868)),
    Run("T1 lr 1e-2", "resnet18", config=dict(lr=1e-2, epochs=15), group="1",
        published=dict(train_acc=91.05, val_acc=85.82, train_loss=0.2558, val_loss=0.4320)),
    Run("T1 lr 1e-1", "resnet18", config=dict(lr=1e-1, epochs=15), group="1",
        published=dict(train_acc=87.20, val_acc=84.54, train_loss=0.3658, val_loss=0.4607)),
    Run("T2 no scheduler", "resnet18", config=dict(lr=1e-2, epochs=300), group="2",
        published=dict(train_acc=99.95, val_acc=92.38, train_loss=0.0016, val_loss=0.5071)),
    Run("T2 cosine", "resnet18", config=dict(lr=1e-2, epochs=300, schedule="cosine"), group="2",
        published=dict(train_acc=100.00, val_acc=92.59, train_loss=0.0001, val_loss=0.4547)),
    Run("T3 wd 5e-4", "resnet18", config=dict(lr=1e-2, epochs=300, schedule="cosine", weight_decay=5e-4), group="3",
        published=dict(train_acc=100.00, val_acc=94.12, train_loss=0.0012, val_loss=0.2448)),
    Run("T3 wd 1e-2", "resnet18", config=dict(lr=1e-2, epochs=300, schedule="cosine", weight_decay=1e-2), group="3",
        published=dict(train_acc=100.00, val_acc=95.06, train_loss=0.0229, val_loss=0.1919, test_acc=95.10)),
    Run("T4 custom BN", "resnet18", model_kwargs=dict(norm_layer="detached_batchnorm"),
        config=dict(lr=1e-2, epochs=300, schedule="cosine", weight_decay=1e-2), group="4",
        published=dict(train_acc=21.95, val_acc=21.65, train_loss=1.9707, val_loss=1.9775)),
]

COLUMNS = [
    Column("table", lambda r, h: r.group),
    Column("run", lambda r, h: r.label),
    Column("train acc", final("train_acc")), Column("val acc", final("val_acc")),
    Column("train loss", final("train_loss")), Column("val loss", final("val_loss")),
    Column("test acc", test_acc),
    Column("published train acc", published("train_acc")), Column("published val acc", published("val_acc")),
    Column("published train loss", published("train_loss")), Column("published val loss", published("val_loss")),
    Column("s/epoch", lambda r, h: sum(e.epoch_seconds for e in h.epochs) / len(h.epochs)),
]

if __name__ == "__main__":
    sys.exit(main(
        __doc__, "runs/seed000", dataset="cifar10", split="40000:10000", norm="cifar10_seed000", base=BASE, runs=RUNS,
        columns=COLUMNS, title="Seed 000, Tables 1-4: ResNet-18 on CIFAR-10 (values of the best-val epoch)",
        budget_sizes=(256, 256, 500), budget_epochs=1,
    ))
