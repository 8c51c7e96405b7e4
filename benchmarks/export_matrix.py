"""Every registered model through ONNX (run by onnxruntime) and torch.compile(fullgraph=True).

CI checks TorchScript, fx, torchvision's extractor and torch.export on every model, but ONNX and
compile only on a sample of families and flag combinations (the rest would cost minutes per
model on 2 CPU cores). This script runs the same two checks as ``tests/test_model_contract.py``
(the same functions) on every registered model and prints one row each:

    python benchmarks/export_matrix.py            # all models
    python benchmarks/export_matrix.py vgg106     # some

Exit status 1 when any model fails.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_model_contract import _compile_matches, _onnx_matches  # noqa: E402

import cifarnets  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="model names (default: every registered model)")
    args = parser.parse_args()
    names = args.models or cifarnets.list_models()
    print("| model | ONNX (onnxruntime = eager) | compile fullgraph, eval and train grads | seconds |")
    print("|---|---|---|--:|")
    failed = 0
    for name in names:
        cells = []
        start = time.perf_counter()
        for check in (_onnx_matches, _compile_matches):
            torch.manual_seed(0)
            try:
                check(cifarnets.create(name).eval())
                cells.append("ok")
            except Exception as err:  # a row per model: report every failure, then exit non-zero
                failed += 1
                cells.append(f"FAILED: {type(err).__name__}: {str(err).splitlines()[0][:80]}")
                traceback.print_exc(file=sys.stderr)
        print(f"| {name} | {cells[0]} | {cells[1]} | {time.perf_counter() - start:.0f} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
