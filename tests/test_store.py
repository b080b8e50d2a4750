"""The SQLite sweep store: WAL settings, one transaction per task, no duplicates, read-only readers."""

import sqlite3

import pytest

from kvmem.runner.store import SCHEMA_VERSION, PlannedTask, Store, StoreError


def planned(i: int, seed: int = 0) -> PlannedTask:
    return PlannedTask(task_id=f"t{i}-{seed}", experiment="exp", profile="quick", config=f'{{"x":{i}}}',
                       config_hash=f"h{i}", params={"x": i}, overrides={"x": str(i)}, seed=seed)


def finish(store: Store, task_id: str, tables=None, **extra) -> bool:
    tables = {"a": b"AAAA", "b": b"BB"} if tables is None else tables
    args = dict(seconds=1.5, claims=[{"name": "c", "passed": True}], scalars={"s": 0.1},
                tables=tables, table_rows={k: len(v) for k, v in tables.items()},
                versions={"kvmem": "0"}, worker="w:1", backend="in-process")
    args.update(extra)
    return store.finish(task_id, **args)


def raw_rows(path, query):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def test_new_store_is_wal_with_full_sync_and_schema_version(tmp_path):
    with Store(tmp_path / "out") as store:
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.counts() == {"pending": 0, "done": 0, "failed": 0}
    assert (tmp_path / "out" / "sweep.sqlite").is_file()
    names = {r[0] for r in raw_rows(tmp_path / "out" / "sweep.sqlite", "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "sweeps", "sweep_tasks", "tasks", "task_tables"} <= names
    assert raw_rows(tmp_path / "out" / "sweep.sqlite", "SELECT value FROM meta WHERE key='schema_version'") == [
        (str(SCHEMA_VERSION),)]


def test_plan_finish_and_duplicate_finish_leaves_the_first_row(tmp_path):
    with Store(tmp_path) as store:
        tasks = [planned(i) for i in range(3)]
        store.add_sweep("s1", "exp", "quick", {"grid": 1}, tasks)
        store.add_sweep("s1", "exp", "quick", {"grid": 1}, tasks)  # planning twice changes nothing
        assert store.counts() == {"pending": 3, "done": 0, "failed": 0}
        assert finish(store, "t0-0") is True
        before = raw_rows(store.path, "SELECT * FROM tasks WHERE task_id='t0-0'")
        # The same task completing a second time (submitted twice) must not create or overwrite anything.
        assert finish(store, "t0-0", tables={"a": b"other"}, seconds=9.0) is False
        assert raw_rows(store.path, "SELECT * FROM tasks WHERE task_id='t0-0'") == before
        assert raw_rows(store.path, "SELECT name, data FROM task_tables WHERE task_id='t0-0' ORDER BY name") == [
            ("a", b"AAAA"), ("b", b"BB")]
        assert store.finished_ids() == {"t0-0"}
        assert store.counts() == {"pending": 2, "done": 1, "failed": 0}
        assert store.check() == []
        assert [s["tasks"] for s in store.sweeps()] == [3]


def test_finish_is_one_transaction(tmp_path):
    with Store(tmp_path) as store:
        store.add_sweep("s1", "exp", "quick", {}, [planned(0)])
        # table_rows lacks "b": the insert fails after the UPDATE ran; nothing may remain of it.
        with pytest.raises(KeyError):
            store.finish("t0-0", seconds=1.0, claims=[], scalars={}, tables={"a": b"A", "b": b"B"},
                         table_rows={"a": 1}, versions={}, worker="w", backend="x")
        assert store.counts() == {"pending": 1, "done": 0, "failed": 0}
        assert raw_rows(store.path, "SELECT COUNT(*) FROM task_tables") == [(0,)]
        assert finish(store, "t0-0") is True
        assert store.check() == []


def test_unplanned_task_and_failures(tmp_path):
    with Store(tmp_path) as store:
        store.add_sweep("s1", "exp", "quick", {}, [planned(0), planned(1)])
        with pytest.raises(KeyError, match="not planned"):
            finish(store, "nope")
        assert store.fail("t0-0", "ValueError: boom") is True
        assert store.counts() == {"pending": 1, "done": 0, "failed": 1}
        assert raw_rows(store.path, "SELECT error FROM tasks WHERE task_id='t0-0'") == [("ValueError: boom",)]
        assert finish(store, "t0-0") is True  # a retry succeeds; the error is cleared
        assert raw_rows(store.path, "SELECT status, error FROM tasks WHERE task_id='t0-0'") == [("done", None)]
        assert store.fail("t0-0", "late failure") is False  # never downgrades a done task
        assert store.counts() == {"pending": 1, "done": 1, "failed": 0}


def test_readonly_reader_sees_only_committed_tasks_and_cannot_write(tmp_path):
    with Store(tmp_path) as writer:
        writer.add_sweep("s1", "exp", "quick", {}, [planned(0), planned(1)])
        finish(writer, "t0-0")
        reader = Store(tmp_path, readonly=True)
        writer.conn.execute("BEGIN IMMEDIATE")
        writer.conn.execute("UPDATE tasks SET status='done' WHERE task_id='t1-0'")
        # WAL: the reader is not blocked and does not see the open transaction.
        assert reader.finished_ids() == {"t0-0"}
        writer.conn.execute("COMMIT")
        assert reader.finished_ids() == {"t0-0", "t1-0"}
        with pytest.raises(StoreError, match="read-only"):
            reader.fail("t0-0", "x")
        reader.close()


def test_check_reports_missing_tables(tmp_path):
    with Store(tmp_path) as store:
        store.add_sweep("s1", "exp", "quick", {}, [planned(0)])
        finish(store, "t0-0")
        store.conn.execute("DELETE FROM task_tables WHERE name='b'")
        problems = store.check()
        assert len(problems) == 1 and "2 tables but 1 are stored" in problems[0]


def test_open_errors_name_the_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create output folder"):
        Store(blocker / "sub")
    with pytest.raises(StoreError, match="no sweep store"):
        Store(tmp_path / "missing", readonly=True)
    with Store(tmp_path / "old") as store:
        store.conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="schema version 99"):
        Store(tmp_path / "old")
