"""The results table: the VGG38 report's Table 1 columns, the AlexNet/VGG report's Tables 5-7 numbers."""

from __future__ import annotations

import csv
import io

import pytest

from cifarnets.train import ResultRow, results_table
from cifarnets.train.history import EpochRecord, History


def run(model: str, params: int, test_acc, *, best: int = 2, epochs: int = 3, val: bool = True, **kwargs) -> History:
    records = [
        EpochRecord(epoch=e, train_loss=2.0 / e, train_acc=30.0 * e, val_loss=(2.5 / e) if val else None,
                    val_acc=(25.0 * e) if val else None, lr=0.01 * (4 - e), epoch_seconds=30.0 + 2 * e)
        for e in range(1, epochs + 1)
    ]
    return History(model=model, params=params, epochs=records, best_epoch=best if val else None,
                   test=None if test_acc is None else {"loss": 0.5, "acc": test_acc}, **kwargs)


# The AlexNet/VGG report's Table 7: parameters / test accuracy (%); the report rounds to thousands.
@pytest.mark.parametrize("model, params, acc, published_k", [
    ("alexnet_cifar", 23_238_474, 87.81, 264),
    ("vgg16", 33_638_218, 10.00, 3_360),
    ("vgg16_bn", 33_646_666, 91.94, 366),
    ("vgg8_classic", 13_119_050, 88.32, 148),
])
def test_parameters_per_accuracy_point_reproduce_the_alexnet_vgg_reports_table7(model, params, acc, published_k):
    row = results_table([run(model, params, acc)])[0]
    assert row.params_per_point == pytest.approx(params / acc)
    # The report divides rounded counts (23.2 M / 87.81 = 264 K); exact counts differ by < 0.5 %.
    assert row.params_per_point / 1000 == pytest.approx(published_k, rel=0.005)


def test_row_takes_the_best_epoch_and_averages_epoch_times():
    row = results_table([run("vgg38", 338_500, 59.19, best=2, config={"lr": 1e-2}, model_kwargs={"bn": True})])[0]
    assert row == ResultRow(
        run="vgg38 bn", model="vgg38", params=338_500, lr=1e-2, best_epoch=2, train_loss=1.0, train_acc=60.0,
        val_loss=1.25, val_acc=50.0, test_loss=0.5, test_acc=59.19, seconds_per_epoch=34.0,
        params_per_point=338_500 / 59.19, epochs=3, final_train_loss=2.0 / 3, final_train_acc=90.0,
        final_val_loss=2.5 / 3, final_val_acc=75.0, best_val_acc=50.0, seed_group=row.seed_group,
    )
    assert row["final_val_acc"] == 75.0 and "published_val_acc" not in row and row.get("folder") is None


def test_missing_values_stay_empty():
    row = results_table([run("vgg38", 336_196, None, val=False)])[0]
    assert row.best_epoch == 3  # no validation: the last epoch stands for the run
    assert row.val_acc is None and row.test_acc is None and row.params_per_point is None
    assert row.lr == pytest.approx(0.03)  # no config lr: the first epoch's
    zero = results_table([run("vgg38", 336_196, 0.0)])[0]
    assert zero.params_per_point is None  # not inf


def test_markdown_and_csv():
    table = results_table([run("vgg08", 59_716, 46.84), run("vgg38", 336_196, None)])
    md = table.to_markdown().splitlines()
    assert md[0].startswith("| run | params | lr | best epoch |")
    assert md[2].startswith("| vgg08 | 59,716 | 0.03 | 2 | 1.0000 | 60.00 | 1.2500 | 50.00 | 0.5000 | 46.84 | 34.00 |")
    assert md[2].endswith(f"| {round(59_716 / 46.84):,} |")
    assert md[3].count("–") == 3  # test loss, test acc, params per point
    rows = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert rows[0]["params"] == "59716" and float(rows[0]["params_per_point"]) == pytest.approx(59_716 / 46.84)
    assert rows[1]["test_acc"] == "" and rows[1]["model"] == "vgg38"
    assert str(table) == table.to_markdown() and len(table) == 2 and [r.model for r in table] == ["vgg08", "vgg38"]


def test_save_is_atomic_and_picks_the_format_by_suffix(tmp_path):
    table = results_table([run("vgg08", 59_716, 46.84)])
    md = table.save(tmp_path / "out" / "results.md")
    assert md.read_text() == table.to_markdown() + "\n"
    assert table.save(tmp_path / "results.csv").read_text() == table.to_csv()
    with pytest.raises(ValueError, match=r"\.md or \.csv"):
        table.save(tmp_path / "results.txt")
    assert not list(tmp_path.rglob("*.tmp"))
    assert (md.stat().st_mode & 0o777) == ((tmp_path / "results.csv").stat().st_mode & 0o777)
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    assert (md.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)  # not mkstemp's private 0600


def test_runs_can_be_folders(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "history.json").write_text(run("vgg08", 59_716, 46.84).to_json())
    assert results_table([folder])[0].params == 59_716
    assert results_table(folder)[0].test_acc == 46.84
    with pytest.raises(FileNotFoundError, match="run folder"):
        results_table([tmp_path / "missing"])
