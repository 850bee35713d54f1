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
