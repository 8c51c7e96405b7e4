"""examples/vanishing_gradient.ipynb runs from top to bottom in a fresh kernel (any cell error fails).

The notebook is committed without outputs; this test executes it with nbclient in a temporary
folder, against this checkout (PYTHONPATH), and checks what its cells computed, so a notebook
that runs but no longer shows the vanishing gradient fails too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from data_helpers import needs_fashion_mnist

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "vanishing_gradient.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
@needs_fashion_mnist()
def test_notebook_executes(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel inherits this environment: it imports this checkout, not an installed copy.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell

    def text_of(cell) -> str:
        return "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream")

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    firsts = {}
    for line in text_of(next(c for c in code if "compare_gradient_flow" in c.source)).splitlines():
        label, value = line.split(" first layer: ")
        firsts[label.strip()] = float(value)
    assert set(firsts) == {"vgg38", "vgg38 bn", "vgg38 bn+rc"}
    # The reports' contrast at initialisation: plain VGG38's first layer is orders of magnitude below BN's.
    assert firsts["vgg38"] < 1e-6 * firsts["vgg38 bn"] and firsts["vgg38"] < 1e-6 * firsts["vgg38 bn+rc"]

    figures = [c for c in code if any("image/png" in out.get("data", {}) for out in c.outputs)]
    assert len(figures) == 2, "the two gradient-flow figures were not displayed"

    table = text_of(next(c for c in code if "histories[" in c.source)).splitlines()
    rows = {line[:12].strip(): line.split() for line in table[1:]}
    assert set(rows) == {"vgg38", "vgg38 bn+rc"}
    grad = {label: float(row[-1]) for label, row in rows.items()}
    assert grad["vgg38"] < 1e-6 * grad["vgg38 bn+rc"]  # during training too, on real images
    json.dumps(nb)  # the executed notebook is still plain JSON (no object left in an output)
