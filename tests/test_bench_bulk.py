"""The bulk scenarios' pure parts: which keys a run accepts, the file they import, the ratio
and its verdict, the report."""

import io

import pytest

from app.employees.csv import format as csv_format
from bench import bulk
from bench.run import parse_args, scenario_keys


class TestKeys:
    def test_l_and_m_are_known_and_in_the_default_run(self) -> None:
        assert scenario_keys("m,l") == ["l", "m"]
        assert {"l", "m"} <= set(scenario_keys(parse_args([]).scenarios))

    def test_an_unknown_key_names_the_bulk_ones_too(self) -> None:
        with pytest.raises(SystemExit, match="l, m"):
            scenario_keys("z")


class TestImportFile:
    def test_every_generated_row_is_a_valid_record_numbered_after_an_offset(self, tmp_path) -> None:
        path = tmp_path / "e.csv"

        bulk.write_csv(path, 500, after=1000)

        items = list(csv_format.read_rows(csv_format.decode_lines(io.BytesIO(path.read_bytes()))))
        assert all(isinstance(item, csv_format.Row) for item in items)
        emp_ids = sorted(item.data.emp_id for item in items if isinstance(item, csv_format.Row))
        assert emp_ids == list(range(1001, 1501))


class TestResults:
    def test_ratio_is_ours_over_the_bare_copy_and_met_up_to_2x(self) -> None:
        within = bulk.BulkResult("l", 200_000, 10.0, 19.9, 90_000)
        over = bulk.BulkResult("m", 200_000, 1.0, 2.5, 80_000)

        assert (within.ratio, within.met) == (1.99, True)
        assert (over.ratio, over.met) == (2.5, False)
        assert within.to_dict()["ratio"] == 1.99

    def test_markdown_has_a_row_per_scenario(self) -> None:
        results = [
            bulk.BulkResult("l", 200_000, 10.0, 15.0, 92_160, 16.5),
            bulk.BulkResult("m", 200_000, 1.0, 2.5, 81_920, 4.0, "export-csv"),
            bulk.BulkResult("m", 200_000, 1.0, 1.5, 102_400, 0.0, "GET /employees/export.csv"),
        ]

        text = bulk.markdown(results, "2026-12-04 17:00 UTC", "python -m bench.run --scenarios l,m")

        rows = [line for line in text.splitlines() if line.startswith("| (")]
        assert rows[0].split("|")[2:8] == [
            " 200,000 ",
            " 15.00 ",
            " 10.00 ",
            " 1.50 ",
            " <= 2x, RSS flat ",
            " yes ",
        ]
        assert rows[1].endswith("| NO | 80.0 | 4.00 |")
        assert "GET /employees/export.csv" in rows[2] and rows[2].endswith("| yes | 100.0 | - |")
