"""``cifarnets train`` and ``cifarnets eval``: the reports' runs from the command line.

    cifarnets train vgg38 --bn --rc --dataset cifar100 --split 47500:2500 --lr 1e-2 \\
        --min-lr 2e-5 --epochs 100 --batch-size 100 --out runs/vgg38_bn_rc      # the VGG38 report, Table 1
    cifarnets train --resume runs/vgg38_bn_rc                                  # after a crash
    cifarnets train --resume runs/vgg38 --change-schedule --lr 1e-4            # after a NaN loss
    cifarnets eval runs/vgg38_bn_rc --split test

The training options are generated from `TrainConfig`'s fields (their help text and default
live there, once); ``--in-chans``/``--num-classes`` default to the data set's, and the input
normalisation to the data set's preset (``--data-norm``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
import typing
from pathlib import Path
from typing import Any, Literal, Optional

from ._common import UsageError, add_model_arguments, add_option, model_kwargs

__all__ = ["register", "train_options"]

def train_options() -> list[tuple[str, dataclasses.Field]]:
    """(flag, field) of every `TrainConfig` field the command line sets (`cifarnets.train.spec`)."""
    from ..train.spec import train_options as options

    return options()


def _data_options() -> list[Any]:
    from ..train.spec import DATA_OPTIONS

    return [o for o in DATA_OPTIONS if not o.grid_only]


def _add_config_option(group: argparse._ArgumentGroup, option: str, f: dataclasses.Field, hint: Any) -> None:
    shown = f.metadata.get("shown")
    default = f.default
    if shown is None:
        shown = {True: "on", False: "off"}.get(default, default) if isinstance(default, bool) else f"{default:g}" \
            if isinstance(default, float) else str(default) if default != "" else "none"
    kwargs: dict[str, Any] = {"dest": f.name, "default": None, "help": f"{f.metadata['help']} (default: {shown})"}
    args = typing.get_args(hint)
    base = next((a for a in args if a is not type(None)), hint) if typing.get_origin(hint) is typing.Union else hint
    if base is bool and option.startswith("--no-"):
        kwargs["action"] = "store_true"  # --no-wd-norm-bias: the option is the negative already
    elif base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(base) is Literal:
        kwargs["choices"] = typing.get_args(base)
    elif typing.get_origin(base) is tuple:
        item, *rest = typing.get_args(base)
        kwargs["type"] = item
        kwargs["nargs"] = "+" if rest == [Ellipsis] else len(typing.get_args(base))
        kwargs["metavar"] = item.__name__.upper()
    else:
        kwargs["type"] = base
    group.add_argument(option, **kwargs)


def _dataset_name(name: str) -> str:
    from ..data import UnknownDatasetError, canonical_dataset_name

    try:
        return canonical_dataset_name(name)
    except UnknownDatasetError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``train`` and ``eval`` subcommands."""
    from ..train.config import FIELD_TYPES

    p = sub.add_parser(
        "train", help="train a model (resumable run folder)",
        description="Train a registered model on a data set; writes config, history, checkpoints and test metrics "
                    "to a run folder, locked while it trains. Defaults are the coursework reports' recipe "
                    "(Adam 1e-3, cosine, batch 100, 100 epochs).",
    )
    p.add_argument("model", metavar="MODEL", nargs="?", help="registered model name (not needed with --resume)")
    add_model_arguments(p, with_name=False)

    d = p.add_argument_group("data")
    for option in _data_options():
        add_option(d, option)

    groups: dict[str, argparse._ArgumentGroup] = {}
    for option, f in train_options():
        name = f.metadata["group"]
        if name not in groups:
            groups[name] = p.add_argument_group(name)
        _add_config_option(groups[name], option, f, FIELD_TYPES[f.name])
    r = groups["run"]
    r.add_argument("--out", metavar="RUN_DIR", default=None, help="run folder (default: runs/MODEL_DATASET_TIME)")
    r.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR")
    r.add_argument("--change-schedule", action="store_true",
                   help="with --resume: let --lr, --min-lr, --sched, --milestones, --gamma, --warmup-epochs and "
                        "--warmup-start-factor change; the new schedule applies from the next epoch, recorded in "
                        "the history")
    r.add_argument("--allow-world-size-change", action="store_true",
                   help="with --resume: continue with another number of torchrun processes (the result then "
                        "differs from an uninterrupted run)")
    p.set_defaults(handler=_train)

    e = sub.add_parser(
        "eval", help="evaluate a checkpoint",
        description="Loss and accuracy of a checkpoint (or run folder) on a split.")
    e.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a .safetensors file or a run folder (its best.safetensors)")
    e.add_argument("--dataset", type=_dataset_name, metavar="NAME", default=None,
                   help="data set (default: the one it was trained on)")
    e.add_argument("--split", choices=("test", "val", "train"), default="test", help="which split (default: test)")
    e.add_argument("--data-dir", default=None, help="where the data set is")
    e.add_argument("--download", action="store_true", help="download the data set if missing")
    e.add_argument("--batch-size", type=int, default=500, help="evaluation batch size (default: 500)")
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
    kwargs = {f.name: getattr(args, f.name) for _, f in train_options() if getattr(args, f.name, None) is not None}
    for name in ("milestones", "betas"):
        if name in kwargs:
            kwargs[name] = tuple(kwargs[name])
    return kwargs


def _train(args: argparse.Namespace) -> int:
    from ..train import RunDir, fit, resume
    from ..train.config import resumable_fields
    from ..train.spec import OPTIONS, RunSpec

    if args.resume:
        options = {f.name: o for o, f in train_options()}
        given = [o.flag for o in _data_options() if getattr(args, o.name) is not None]
        changes = _train_config_kwargs(args)
        given += [options[f] for f in changes if f not in resumable_fields(args.change_schedule)]
        if args.model or model_kwargs(args):
            given.insert(0, "MODEL/model flags")
        if args.out is not None:
            given.append("--out")
        if given:
            changeable = ", ".join(options[f] for f in sorted(resumable_fields()) if f in options)
            hint = ""
            if not args.change_schedule and set(changes) & resumable_fields(True) - resumable_fields():
                hint = "; to change the learning rate or its schedule, add --change-schedule"
            raise UsageError(f"--resume takes everything from {args.resume}/config.json; drop {', '.join(given)} "
                             f"(only {changeable} may change{hint})")
        folder = RunDir(args.resume)
        stored = folder.config()
        if _is_main_process():
            done = folder.epochs_done()
            print(f"resuming {args.resume}: {stored['model']} on {stored['data'].get('dataset')}, "
                  f"{done if done is not None else 0}/{stored['train'].get('epochs')} epochs done", flush=True)
        history = resume(args.resume, callbacks=[_print_epoch], change_schedule=args.change_schedule,
                         allow_world_size_change=args.allow_world_size_change, **changes)
        _print_test(history, args.resume)
        return 0
    for flag in ("change_schedule", "allow_world_size_change"):
        if getattr(args, flag):
            raise UsageError(f"--{flag.replace('_', '-')} only applies with --resume RUN_DIR")

    if not args.model:
        raise UsageError("name the MODEL to train (see `cifarnets list`), or pass --resume RUN_DIR")
    if not args.dataset:
        raise UsageError("choose the data set with --dataset (cifar10, cifar100, fashion_mnist, mnist, kmnist, svhn, "
                         "synthetic, or folder:PATH)")
    # Every setting is checked (one parser: RunSpec) before the data set is read or anything is written.
    out = args.out
    if out is None:
        from ..train.distributed import env_world

        world = env_world()
        if world is not None and world[1] > 1:
            raise UsageError("under torchrun pass --out RUN_DIR (every process must name the same folder)")
        dataset = Path(args.dataset.split(":", 1)[1]).name if args.dataset.startswith("folder:") else args.dataset
        out = str(Path("runs") / f"{args.model}_{dataset}_{time.strftime('%Y%m%d-%H%M%S')}")
    values = {name: getattr(args, o.target if o.part == "train" else name, None) for name, o in OPTIONS.items()
              if not o.grid_only}
    spec = RunSpec.from_options({**values, "model": args.model}, defaults={"out_dir": out})
    data = spec.data.load()
    if _is_main_process():
        if data.is_synthetic:
            print("NOTE: training on the SYNTHETIC data set (generated images): the numbers say nothing about CIFAR.")
        val = len(data.val) if data.val is not None else 0
        print(f"{args.model}{''.join(f' {k}={v}' for k, v in spec.flags.items())} on {data.name}: "
              f"{len(data.train):,} train / {val:,} val / {len(data.test):,} test; {spec.train.describe_optimizer()}; "
              f"batch {spec.train.batch_size}, {spec.train.epochs} epochs -> {out}", flush=True)
    history = fit(spec.model, data, spec.train, model_kwargs=spec.flags, callbacks=[_print_epoch])
    _print_test(history, out)
    return 0


def _print_test(history: Any, run_dir: Optional[str]) -> None:
    if not _is_main_process() or history.test is None:
        return
    best = history.best()
    val = f", val acc {best.val_acc:.2f}%" if best is not None and best.val_acc is not None else ""
    print(f"test (best epoch {history.best_epoch}{val}): loss {history.test['loss']:.4f}  "
          f"acc {history.test['acc']:.2f}%   run folder: {run_dir}", flush=True)


def _eval(args: argparse.Namespace) -> int:
    import json

    from ..data import DataSource
    from ..train import evaluate, load_checkpoint
    from ..train.distributed import resolve_device

    device = resolve_device(args.device)
    model, meta = load_checkpoint(args.checkpoint, device=device)
    if isinstance(model, dict):
        raise UsageError(f"{args.checkpoint} names no registered model ({meta.get('model')!r}); "
                         "evaluate it from Python with the model class and cifarnets.train.evaluate()")
    stored = (meta.get("data") or {}).get("load_args") or {}
    name = args.dataset or stored.get("name") or meta.get("dataset")
    if not name:
        raise UsageError(f"{args.checkpoint} does not say which data set it was trained on; pass --dataset")
    if meta.get("dataset") == "arrays" and not args.dataset:
        raise UsageError(f"{args.checkpoint} was trained on images handed over in memory (from_arrays); "
                         "evaluate it from Python with cifarnets.train.evaluate(), or pass --dataset")
    same = DataSource.from_dict(stored).name == DataSource(name).name if stored else False
    load_args = {**stored} if same else {"name": name}
    if args.data_dir is not None:
        load_args["data_dir"] = args.data_dir
    load_args["download"] = bool(args.download)
    data = DataSource.from_dict(load_args).load()
    images = {"test": data.test, "val": data.val, "train": data.train}[args.split]
    if images is None:
        raise UsageError(f"{name} loaded with split {load_args.get('split', 'default')!r} has no validation part; "
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
