"""The run log (common/runlog.py): CSVs cut back to a checkpoint, boundaries and segments, on hand-written files."""

import csv

from common.runlog import Boundaries, CsvLog, truncate_csv


def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def write(path, data):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(data)


def test_truncate_csv_keeps_the_header_and_the_counted_rows(tmp_path):
    p = tmp_path / "curve.csv"
    write(p, [["step", "wall"], [10, 1.5], [20, 2.5], [30, 3.5]])
    assert truncate_csv(p, 2) == ["20", "2.5"]
    assert rows(p) == [["step", "wall"], ["10", "1.5"], ["20", "2.5"]]
    assert truncate_csv(p, 0) is None and rows(p) == [["step", "wall"]]
    assert truncate_csv(tmp_path / "absent.csv", 3) is None and not (tmp_path / "absent.csv").exists()


def test_truncate_csv_by_step_as_the_zoo_resumes(tmp_path):
    p = tmp_path / "curve.csv"
    write(p, [["step", "wall"], [10, 1.5], [20, 2.5], [30, 3.5]])
    assert truncate_csv(p, lambda r: int(r[0]) <= 25) == ["20", "2.5"]
    assert rows(p) == [["step", "wall"], ["10", "1.5"], ["20", "2.5"]]
    assert truncate_csv(p, lambda r: int(r[0]) <= 5) is None and rows(p) == [["step", "wall"]]


def test_csv_log_new_and_resumed(tmp_path):
    p = tmp_path / "curve.partial.csv"
    write(p, [["old"], ["stale"]])
    log = CsvLog(p, ("a", "b"))            # a new run replaces what was there
    log.write((1, 2))
    log.write((3, 4))
    log.flush()
    assert log.rows == 2
    log.write((5, 6))                      # written after the checkpoint that counted 2 rows, then killed
    log.close()
    log = CsvLog(p, ("a", "b"), keep=2)    # resumed: the third row goes, the header stays once
    assert log.rows == 2 and log.last == ["3", "4"]
    log.write((7, 8))
    log.close()
    assert rows(p) == [["a", "b"], ["1", "2"], ["3", "4"], ["7", "8"]]


def test_boundaries():
    b = Boundaries(100)
    assert [t for t in range(0, 401, 50) if b.at(t, start=0)] == [100, 200, 300, 400]
    assert not b.at(200, start=200)        # the step a run resumed at is not a new boundary
    assert [b.segment(t) for t in (0, 99, 100, 250)] == [0, 0, 1, 2]
    none = Boundaries(0)
    assert not any(none.at(t, 0) for t in range(5)) and none.segment(1234) == 0


def test_csv_log_write_dict_fixes_the_columns_at_the_first_row(tmp_path):
    p = tmp_path / "train_stats.partial.csv"
    log = CsvLog(p)                        # no header: the first row's keys are the columns
    log.write_dict({"step": 1, "loss": 0.5})
    log.write_dict({"step": 2, "loss": 0.25, "extra": 9})  # a column the first row lacked is dropped
    log.write_dict({"step": 3})                            # a missing one is left empty
    log.close()
    assert rows(p) == [["step", "loss"], ["1", "0.5"], ["2", "0.25"], ["3", ""]]
    log = CsvLog(p, keep=1)                # resumed: the file keeps its header, the columns come from the next row
    log.write_dict({"step": 4, "loss": 0.125})
    log.close()
    assert rows(p) == [["step", "loss"], ["1", "0.5"], ["4", "0.125"]]
    CsvLog(p, keep=0).close()              # a checkpoint before the first row: the header alone stays ...
    log = CsvLog(p, keep=0)
    log.write_dict({"step": 5, "loss": 1.0})
    log.close()
    assert rows(p) == [["step", "loss"], ["5", "1.0"]]  # ... and is not written twice


def test_a2c_stats_keep_one_header_when_resumed_before_their_first_row(tmp_path):
    """Statistics rarer than checkpoints: the checkpoint at update 20 counted no statistics row, the job was killed
    after the first one (update 40); the resumed run's train_stats.csv has one header and equals the
    uninterrupted run's."""
    import pandas as pd

    from common.a2c import A2CArgs, train

    kw = dict(game="MinAtar/Breakout", net="minatar", num_envs=4, n_steps=5, total_steps=1200, checkpoint_every=400,
              stats_every=800, log_interval_s=1e9, device="cpu", seed=2)
    train(A2CArgs(**kw), tmp_path / "full")
    train(A2CArgs(**kw), tmp_path / "cut", stop_after_updates=40)
    assert len(rows(tmp_path / "cut" / "train_stats.partial.csv")) == 2   # header and the row the checkpoint missed
    train(A2CArgs(**kw), tmp_path / "cut")
    lines = (tmp_path / "cut" / "train_stats.csv").read_text().splitlines()
    assert lines[0].startswith("env_steps") and not any(l.startswith("env_steps") for l in lines[1:])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "full" / "train_stats.csv"),
                                  pd.read_csv(tmp_path / "cut" / "train_stats.csv"))
