"""fit under DistributedDataParallel: two gloo processes on the CPU, as torchrun would start them.

The model has no normalisation layer (``norm_layer=None``), so two ranks with 50 images each
compute the same averaged gradient as one process with the 100-image batch: the DDP run must
match a single-process run up to float summation order, besides the bookkeeping checks
(only rank 0 writes, no ``module.`` prefixes, identical weights on both ranks).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

import cifarnets
from cifarnets.data import load_dataset
from cifarnets.train import History, TrainConfig, fit

MODEL_KWARGS = {"width": 8, "norm_layer": None, "num_classes": 10}
WORLD = 2

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or sys.platform == "win32",
                                reason="needs torch.distributed with gloo")


def _data():
    return load_dataset("synthetic", synthetic_sizes=(300, 100), split="200:100")


def _config(out_dir) -> TrainConfig:
    # Global batch 100 = 2 ranks x 50; SGD so that the update is linear in the gradient.
    return TrainConfig(epochs=2, batch_size=100, optimizer="sgd", lr=0.05, momentum=0.9, schedule="cosine",
                       device="cpu", quiet=True, out_dir=str(out_dir) if out_dir else None, deterministic=True)


def _model():
    torch.manual_seed(0)
    return cifarnets.create("vgg08", **MODEL_KWARGS)


def _worker(rank: int, port: int, run_dir: str, result_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    from cifarnets import _utils

    writes: list[str] = []
    real = _utils._write_all

    def counting_write(f, data):
        writes.append(os.path.basename(f.name)[1:].rsplit(".", 3)[0])  # .NAME.PID.HEX.tmp
        real(f, data)

    _utils._write_all = counting_write
    model = _model()
    history = fit(model, _data(), _config(run_dir), model_kwargs=MODEL_KWARGS)
    assert not torch.distributed.is_initialized(), "fit must destroy the process group it created"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(result_dir, f"rank{rank}.safetensors"))
    with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"writes": writes, "history": history.to_dict()}, f)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_train_like_one_process(tmp_path):
    run_dir, result_dir = tmp_path / "run", tmp_path / "results"
    result_dir.mkdir()
    mp.spawn(_worker, args=(_free_port(), str(run_dir), str(result_dir)), nprocs=WORLD, join=True)

    results = [json.loads((result_dir / f"rank{r}.json").read_text()) for r in range(WORLD)]
    weights = [load_file(str(result_dir / f"rank{r}.safetensors")) for r in range(WORLD)]
    # Only rank 0 writes; rank 1 wrote nothing at all.
    assert results[1]["writes"] == []
    assert {os.path.basename(p) for p in results[0]["writes"]} >= {
        "config.json", "history.json", "last.safetensors", "last.state.pt", "best.safetensors", "test.json"}
    # Both ranks end with the same weights, and the same (all-reduced) metrics.
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    h0, h1 = (History.from_dict(r["history"]) for r in results)
    assert [(e.train_loss, e.train_acc, e.val_acc) for e in h0.epochs] == \
        [(e.train_loss, e.train_acc, e.val_acc) for e in h1.epochs]
    assert h0.test == h1.test and h0.test["n"] == 100
    # The checkpoint has no DDP prefix and equals what the ranks hold.
    saved = load_file(str(run_dir / "best.safetensors"))
    assert set(saved) == set(weights[0]) and not any(k.startswith("module.") for k in saved)
    for key in saved:
        assert torch.equal(saved[key], weights[0][key]), key
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == 2

    # A single process with the whole batch computes the same run.
    single = _model()
    h = fit(single, _data(), _config(None), model_kwargs=MODEL_KWARGS)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(weights[0][key], value, rtol=1e-4, atol=1e-5, msg=key)
    for a, b in zip(h.epochs, h0.epochs):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
        assert a.val_acc == pytest.approx(b.val_acc, abs=1.01)  # one image may flip


def _stopping_worker(rank: int, port: int, run_dir: str, result_path: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(1)
    from cifarnets.train import DistributedError
    from cifarnets.train.distributed import setup_distributed

    if rank == 1:
        setup_distributed("cpu", timeout_s=3)
        os.kill(os.getpid(), signal.SIGSTOP)  # joined the job, then stopped (Ctrl-Z, a debugger, a hung node)
        return
    try:
        fit(_model(), _data(), _config(run_dir).replace(dist_timeout=3.0), model_kwargs=MODEL_KWARGS)
        outcome = "finished"
    except DistributedError as err:
        outcome = str(err)
    with open(result_path, "w") as f:
        f.write(outcome)


def test_a_stopped_rank_makes_the_other_stop_with_an_error_not_hang(tmp_path):
    ctx = mp.get_context("spawn")
    port, result = _free_port(), tmp_path / "rank0.txt"
    procs = [ctx.Process(target=_stopping_worker, args=(r, port, str(tmp_path / "run"), str(result)))
             for r in range(WORLD)]
    for p in procs:
        p.start()
    try:
        procs[0].join(timeout=240)
        assert procs[0].exitcode == 0, "rank 0 hung or crashed instead of raising DistributedError"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()
    message = result.read_text()
    assert "stopped answering within dist_timeout=3 s" in message and "--resume" in message, message
