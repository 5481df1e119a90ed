"""`flux export` and `flux import`: an execution moves between any two stores byte for byte, and
the tools read it the same on both."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT, empty_pg, flux_cmd


def test_an_execution_moves_file_to_postgresql_to_file_byte_for_byte(tmp_path: Path, pg_url: str) -> None:
    empty_pg(pg_url)
    first, last = str(tmp_path / "first"), str(tmp_path / "last")
    ran = flux_cmd(
        "exec",
        str(ROOT / "examples" / "order.py"),
        "process_order",
        "--id",
        "order-7",
        "--store",
        first,
        "--input",
        '{"order_id": "A-1", "items": ["book", "pen"], "amount": 42.5}',
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    journal = (tmp_path / "first" / "executions" / "order-7.jsonl").read_bytes()
    exported = tmp_path / "order-7.jsonl"
    assert flux_cmd("export", "order-7", "--store", first, "-o", str(exported), cwd=tmp_path).returncode == 0
    assert exported.read_bytes() == journal
    imported = flux_cmd("import", str(exported), "--store", pg_url, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "execution_id: order-7" in imported.stdout and "status: completed" in imported.stdout
    from_pg = flux_cmd("export", "order-7", "--store", pg_url, cwd=tmp_path)
    assert from_pg.stdout.encode() == journal
    again = flux_cmd("import", str(exported), "--store", pg_url, cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.startswith("ExecutionExistsError") and again.stderr.count("\n") == 1
    (tmp_path / "from_pg.jsonl").write_bytes(from_pg.stdout.encode())
    assert flux_cmd("import", str(tmp_path / "from_pg.jsonl"), "--store", last, cwd=tmp_path).returncode == 0
    assert (tmp_path / "last" / "executions" / "order-7.jsonl").read_bytes() == journal
    # The tools read it the same on both stores.
    shown = [
        [
            line
            for line in flux_cmd("show", "order-7", "--store", where, cwd=tmp_path).stdout.splitlines()
            if not line.startswith("journal: ")  # where the store keeps it
        ]
        for where in (first, pg_url)
    ]
    assert shown[0] == shown[1] and len(shown[0]) > 2
    replays = [
        flux_cmd(
            "replay",
            "order-7",
            "--store",
            where,
            "--file",
            str(ROOT / "examples" / "order.py"),
            "--summary",
            cwd=tmp_path,
        )
        for where in (first, pg_url)
    ]
    assert all(r.returncode == 0 for r in replays), [r.stderr for r in replays]
    listed = flux_cmd("list", "--store", pg_url, cwd=tmp_path).stdout
    assert "order-7" in listed and "completed" in listed


def test_a_damaged_journal_is_not_imported(tmp_path: Path, pg_url: str) -> None:
    empty_pg(pg_url)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"seq":0,"kind":"header","format":1,"execution_id":"x1","crc":"00000000"}\n')
    done = flux_cmd("import", str(bad), "--store", pg_url, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("JournalCorruptError") and "bad.jsonl:1" in done.stderr
    assert "no executions" in flux_cmd("list", "--store", pg_url, cwd=tmp_path).stdout
