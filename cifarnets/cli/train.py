"""``cifarnets train`` and ``cifarnets eval``: the reports' runs from the command line.

    cifarnets train vgg38 --bn --rc --dataset cifar100 --split 47500:2500 --lr 1e-2 \\
        --min-lr 2e-5 --epochs 100 --batch-size 100 --out runs/vgg38_bn_rc      # seed 001, Table 1
    cifarnets train --resume runs/vgg38_bn_rc                                  # after a crash
    cifarnets eval runs/vgg38_bn_rc --split test

Training defaults are `TrainConfig`'s (the coursework recipe of seeds 001-003: Adam 1e-3,
cosine, batch 100, 100 epochs). ``--in-chans``/``--num-classes`` default to the data set's,
so ``cifarnets train vgg08 --dataset fashion_mnist`` builds a 1-channel, 10-class VGG08.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, Optional

from ._common import add_model_arguments, model_kwargs

__all__ = ["register"]

# CLI option -> TrainConfig field. Options left at None keep TrainConfig's default (or, with
# --resume, the stored value), which is how --resume can tell what the user tried to change.
_TRAIN_OPTIONS = {
    "opt": "optimizer", "lr": "lr", "momentum": "momentum", "nesterov": "nesterov", "wd": "weight_decay",
    "decoupled_wd": "decoupled_wd", "no_wd_norm_bias": "no_wd_norm_bias", "sched": "schedule", "min_lr": "min_lr",
    "milestones": "milestones", "gamma": "gamma", "warmup_epochs": "warmup_epochs", "sched_unit": "schedule_unit",
    "label_smoothing": "label_smoothing", "epochs": "epochs", "batch_size": "batch_size",
    "eval_batch_size": "eval_batch_size", "seed": "seed", "deterministic": "deterministic", "compile": "compile",
    "amp": "amp", "channels_last": "channels_last", "device": "device", "quiet": "quiet", "augment": "augment",
    "grad_flow": "grad_flow", "label": "label", "sync_bn": "sync_bn",
}
_DATA_OPTIONS = ("dataset", "data_dir", "download", "split", "split_seed", "limit", "data_norm")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``train`` and ``eval`` subcommands."""
    from ..data import DATASETS

    p = sub.add_parser(
        "train", help="train a model (resumable run folder)",
        description="Train a registered model on a data set; writes config, history, checkpoints and test metrics "
                    "to a run folder. Defaults: Adam 1e-3, cosine, batch 100, 100 epochs (seeds 001-003).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", nargs="?", help="registered model name (not needed with --resume)")
    add_model_arguments(p, with_name=False)

    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=DATASETS, default=None, help="data set (required unless --resume)")
    d.add_argument("--data-dir", default=None, help="where the data set is (default $CIFARNETS_DATA_DIR or ~/.cache)")
    d.add_argument("--download", action="store_true", default=None, help="download the data set if missing")
    d.add_argument("--split", default=None, help="train:val sizes, e.g. 40000:10000, or 'none' (default: the report's)")
    d.add_argument("--split-seed", type=int, default=None, help="seed of the val split and of --limit (default 0)")
    d.add_argument("--limit", type=int, default=None, help="train on a stratified subset of N images")
    # Not --norm: that is the model's norm-layer flag (cli._common.add_model_arguments).
    d.add_argument("--data-norm", dest="data_norm", metavar="PRESET", default=None,
                   help="input normalisation preset, e.g. cifar10_seed000 or none (default: the data set's own)")

    o = p.add_argument_group("optimiser and schedule")
    o.add_argument("--opt", choices=("sgd", "adam", "adamw"), default=None, help="optimiser (default adam)")
    o.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3)")
    o.add_argument("--momentum", type=float, default=None, help="SGD momentum (default 0.9)")
    o.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum (SGD)")
    o.add_argument("--wd", type=float, default=None, help="weight decay (default 0); coupled L2 unless --decoupled-wd")
    o.add_argument("--decoupled-wd", action=argparse.BooleanOptionalAction, default=None,
                   help="decoupled weight decay (AdamW / SGDW); default: only with --opt adamw")
    o.add_argument("--no-wd-norm-bias", action="store_true", default=None,
                   help="no weight decay on norm weights/biases")
    o.add_argument("--sched", choices=("none", "cosine", "step"), default=None, help="lr schedule (default cosine)")
    o.add_argument("--min-lr", type=float, default=None, help="cosine floor (default 0; the coursework used 2e-5)")
    o.add_argument("--milestones", type=int, nargs="+", default=None, help="epochs of the step schedule")
    o.add_argument("--gamma", type=float, default=None, help="step schedule factor (default 0.1)")
    o.add_argument("--warmup-epochs", type=float, default=None, help="linear warm-up epochs (default 0)")
    o.add_argument("--sched-unit", choices=("epoch", "step"), default=None,
                   help="step the schedule per epoch (the reports) or per iteration")
    o.add_argument("--label-smoothing", type=float, default=None, help="label smoothing (default 0)")

    r = p.add_argument_group("run")
    r.add_argument("--epochs", type=int, default=None, help="epochs (default 100)")
    r.add_argument("--batch-size", type=int, default=None, help="global batch size (default 100)")
    r.add_argument("--eval-batch-size", type=int, default=None, help="evaluation batch (default 2x batch)")
    r.add_argument("--seed", type=int, default=None, help="training seed: init, order, augmentation (default 0)")
    r.add_argument("--deterministic", action="store_true", default=None, help="deterministic algorithms")
    r.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    r.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on CUDA)")
    r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format (default: on for CUDA and CPU)")
    r.add_argument("--sync-bn", action="store_true", default=None, help="SyncBatchNorm under torchrun")
    r.add_argument("--no-augment", dest="augment", action="store_false", default=None, help="no crop/flip")
    r.add_argument("--no-grad-flow", dest="grad_flow", action="store_false", default=None,
                   help="do not record gradient flow")
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    r.add_argument("--label", default=None, help="name of the run in tables and legends")
    r.add_argument("--out", metavar="RUN_DIR", default=None, help="run folder (default runs/MODEL_DATASET_TIME)")
    r.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR")
    r.add_argument("--quiet", action="store_true", default=None, help="no progress bar")
    p.set_defaults(handler=_train)

    e = sub.add_parser(
        "eval", help="evaluate a checkpoint",
        description="Loss and accuracy of a checkpoint (or run folder) on a split.")
    e.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a .safetensors file or a run folder (its best.safetensors)")
    e.add_argument("--dataset", choices=DATASETS, default=None, help="data set (default: the one it was trained on)")
    e.add_argument("--split", choices=("test", "val", "train"), default="test", help="which split")
    e.add_argument("--data-dir", default=None, help="where the data set is")
    e.add_argument("--download", action="store_true", help="download the data set if missing")
    e.add_argument("--batch-size", type=int, default=500, help="evaluation batch size")
    e.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p_quiet = e.add_argument_group("output")
    p_quiet.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(handler=_eval)


def _is_main_process() -> bool:
    from ..train.distributed import env_world

    world = env_world()
    return world is None or world[0] == 0


def _print_epoch(record: Any, history: Any) -> None:
    total = history.config.get("epochs", "?")
    val = f"  val {record.val_loss:.4f} {record.val_acc:6.2f}%" if record.val_loss is not None else ""
    best = "  *" if record.epoch == history.best_epoch and record.val_acc is not None else ""
    print(f"epoch {record.epoch:>3}/{total}  train {record.train_loss:.4f} {record.train_acc:6.2f}%{val}  "
          f"lr {record.lr:.3g}  {record.epoch_seconds:.1f}s  {record.images_per_second:,.0f} img/s{best}", flush=True)


def _train_config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs = {field: getattr(args, option) for option, field in _TRAIN_OPTIONS.items()
              if getattr(args, option, None) is not None}
    if "milestones" in kwargs:
        kwargs["milestones"] = tuple(kwargs["milestones"])
    return kwargs


def _train(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..train import RUNTIME_FIELDS, TrainConfig, fit, read_run_config, resume

    if args.resume:
        given = [f"--{o.replace('_', '-')}" for o in _DATA_OPTIONS if getattr(args, o) is not None]
        given += [f"--{o.replace('_', '-')}" for o, f in _TRAIN_OPTIONS.items()
                  if getattr(args, o) is not None and f not in RUNTIME_FIELDS]
        if args.model or model_kwargs(args):
            given.insert(0, "MODEL/model flags")
        if args.out:
            given.append("--out")
        if given:
            fixed = {"out_dir", "check_every"}
            changeable = ", ".join("--" + f.replace("_", "-") for f in sorted(RUNTIME_FIELDS - fixed))
            raise ValueError(f"--resume takes everything from {args.resume}/config.json; drop {', '.join(given)} "
                             f"(only {changeable} may change)")
        stored = read_run_config(args.resume)
        runtime = {f: v for f, v in _train_config_kwargs(args).items() if f in RUNTIME_FIELDS}
        if _is_main_process():
            done = len(_history_epochs(args.resume))
            print(f"resuming {args.resume}: {stored['model']} on {stored['data']['name']}, "
                  f"{done}/{stored['train']['epochs']} epochs done", flush=True)
        history = resume(args.resume, callbacks=[_print_epoch], **runtime)
        _print_test(history, args.resume)
        return 0

    if not args.model:
        raise ValueError("name the MODEL to train (see `cifarnets list`), or pass --resume RUN_DIR")
    if not args.dataset:
        raise ValueError("choose the data set with --dataset (cifar10, cifar100, fashion_mnist, synthetic)")
    data_args = {
        "name": args.dataset, "data_dir": args.data_dir, "split": args.split if args.split is not None else "default",
        "seed": args.split_seed or 0, "norm": args.data_norm, "download": bool(args.download), "limit": args.limit,
    }
    data = load_dataset(**data_args)
    data_args["download"] = False  # a resumed run must not silently download again
    out = args.out
    if out is None:
        from ..train.distributed import env_world

        world = env_world()
        if world is not None and world[1] > 1:
            raise ValueError("under torchrun pass --out RUN_DIR (every process must name the same folder)")
        out = str(Path("runs") / f"{args.model}_{args.dataset}_{time.strftime('%Y%m%d-%H%M%S')}")
    config = TrainConfig(**_train_config_kwargs(args), out_dir=out)
    flags = model_kwargs(args)
    if _is_main_process():
        if data.is_synthetic:
            print("NOTE: training on the SYNTHETIC data set (generated images): the numbers say nothing about CIFAR.")
        val = len(data.val) if data.val is not None else 0
        print(f"{args.model}{''.join(f' {k}={v}' for k, v in flags.items())} on {data.name}: "
              f"{len(data.train):,} train / {val:,} val / {len(data.test):,} test; {config.describe_optimizer()}; "
              f"batch {config.batch_size}, {config.epochs} epochs -> {out}", flush=True)
    history = fit(args.model, data, config, model_kwargs=flags, data_args=data_args, callbacks=[_print_epoch])
    _print_test(history, out)
    return 0


def _history_epochs(run_dir: str) -> list:
    from ..train import History

    try:
        return History.load(run_dir).epochs
    except FileNotFoundError:
        return []


def _print_test(history: Any, run_dir: Optional[str]) -> None:
    if not _is_main_process() or history.test is None:
        return
    best = history.best()
    val = f", val acc {best.val_acc:.2f}%" if best is not None and best.val_acc is not None else ""
    print(f"test (best epoch {history.best_epoch}{val}): loss {history.test['loss']:.4f}  "
          f"acc {history.test['acc']:.2f}%   run folder: {run_dir}", flush=True)


def _eval(args: argparse.Namespace) -> int:
    import json

    from ..data import load_dataset
    from ..train import evaluate, load_checkpoint
    from ..train.distributed import resolve_device

    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.checkpoint, device=device)
    if isinstance(model, dict):
        raise ValueError(f"{args.checkpoint} names no registered model ({meta.get('architecture')!r}); "
                         "evaluate it from Python with the model class and cifarnets.train.evaluate()")
    stored = (meta.get("data") or {}).get("load_args") or {}
    name = args.dataset or stored.get("name") or meta.get("dataset")
    if not name:
        raise ValueError(f"{args.checkpoint} does not say which data set it was trained on; pass --dataset")
    load_args = {**stored, "name": name} if stored.get("name") == name else {"name": name}
    if args.data_dir is not None:
        load_args["data_dir"] = args.data_dir
    load_args["download"] = bool(args.download)
    data = load_dataset(**load_args)
    images = {"test": data.test, "val": data.val, "train": data.train}[args.split]
    if images is None:
        raise ValueError(f"{name} loaded with split {load_args.get('split', 'default')!r} has no validation part; "
                         "use --split test")
    mean = std = None
    if name != meta.get("dataset"):
        mean, std = data.mean, data.std  # another data set: its own statistics
    result = evaluate(model, images, mean=mean, std=std, batch_size=args.batch_size, device=device)
    if args.json:
        print(json.dumps({**result, "checkpoint": str(args.checkpoint), "dataset": name, "split": args.split,
                          "epoch": meta.get("epoch")}))
    else:
        epoch = f" (epoch {meta['epoch']})" if meta.get("epoch") is not None else ""
        print(f"{args.checkpoint}{epoch}: {meta.get('model')} on {name} {args.split} ({result['n']:,} images): "
              f"loss {result['loss']:.4f}  acc {result['acc']:.2f}%")
    return 0 if math.isfinite(result["loss"]) else 1
