"""The sweep store: one embedded SQLite database per output folder.

A sweep writes ``DIR/sweep.sqlite``. The driver process is the only writer; workers return
plain payloads and never touch the file. Each finished task is committed in ONE transaction
(its row and all its tables), so the store holds either the whole task or nothing of it.

Durability settings and why:

- ``PRAGMA journal_mode=WAL``: readers (``kvmem results`` while a sweep runs, a test that
  polls) never block the writer, and a commit is a single append to the write-ahead log.
  A process killed at any point (``kill -9`` included) leaves at most an incomplete WAL
  frame, which SQLite ignores on the next open: the last whole transaction wins.
- ``PRAGMA synchronous=FULL``: the WAL is fsynced at every commit, so a task reported as
  finished survives not only a killed process (``NORMAL`` would suffice for that) but also
  an OS crash or power loss. A task costs from a fraction of a second to hours of compute
  and one fsync costs milliseconds, so the safer setting is nearly free here.

Schema (``SCHEMA_VERSION`` = 1)::

    meta(key PRIMARY KEY, value)                       schema_version, created
    sweeps(sweep_id PRIMARY KEY, experiment, profile, spec JSON, created)
    sweep_tasks(sweep_id, task_id, position, PRIMARY KEY (sweep_id, task_id))
    tasks(task_id PRIMARY KEY, experiment, profile, config JSON, config_hash,
          params JSON, overrides JSON, seed, status, seconds, n_tables, claims JSON,
          scalars JSON, versions JSON, error, finished, worker, backend)
    task_tables(task_id, name, format, n_rows, data BLOB, PRIMARY KEY (task_id, name))

``status`` is ``pending`` (planned), ``done`` or ``failed``. A task row is planned once
(``INSERT OR IGNORE``) and finished once: :meth:`Store.finish` updates only a row that is
not yet ``done`` and inserts its tables under the ``(task_id, name)`` primary key, so a
task submitted twice can never produce a second row or overwrite the first.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
STORE_NAME = "sweep.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    sweep_id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    profile TEXT NOT NULL,
    spec TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_tasks (
    sweep_id TEXT NOT NULL REFERENCES sweeps(sweep_id),
    task_id TEXT NOT NULL REFERENCES tasks(task_id),
    position INTEGER NOT NULL,
    PRIMARY KEY (sweep_id, task_id)
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    profile TEXT NOT NULL,
    config TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    params TEXT NOT NULL,
    overrides TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    seconds REAL,
    n_tables INTEGER,
    claims TEXT,
    scalars TEXT,
    versions TEXT,
    error TEXT,
    finished TEXT,
    worker TEXT,
    backend TEXT,
    UNIQUE (experiment, config_hash, seed)
);
CREATE TABLE IF NOT EXISTS task_tables (
    task_id TEXT NOT NULL REFERENCES tasks(task_id),
    name TEXT NOT NULL,
    format TEXT NOT NULL,
    n_rows INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (task_id, name)
);
"""


class StoreError(OSError):
    """The store cannot be created, opened or written (message names the path)."""


@dataclass(frozen=True)
class PlannedTask:
    """One task of a sweep as the store records it before it runs.

    Attributes:
        task_id: hash of experiment, canonical config JSON and seed (the primary key).
        experiment: registered experiment name.
        profile: the profile the config started from.
        config: the canonical config JSON (sorted keys, no spaces).
        config_hash: hash of experiment and canonical config.
        params: the swept settings of this task, as typed JSON values.
        overrides: every ``--set``-style override (strings) that builds the config.
        seed: the random seed.
    """

    task_id: str
    experiment: str
    profile: str
    config: str
    config_hash: str
    params: Mapping[str, Any]
    overrides: Mapping[str, str]
    seed: int


def _dumps(value: Any) -> str:
    # One canonical text per value, so equal payloads are equal bytes in the store.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def store_path(folder: str | Path) -> Path:
    """The database file of a sweep folder (``folder`` itself when it is a ``.sqlite`` file)."""
    folder = Path(folder)
    return folder if folder.suffix == ".sqlite" else folder / STORE_NAME


class Store:
    """The SQLite store of one sweep folder.

    Args:
        folder: the sweep output folder (created if missing) or a ``.sqlite`` path.
        readonly: open without write access (no folder or file is created); used by
            readers while a sweep is running.

    Raises:
        StoreError: the folder cannot be created or the database not opened or written,
            or the database was written by a newer schema.

    Example:
        >>> store = Store("example-sweep")
        >>> store.counts()
        {'pending': 0, 'done': 0, 'failed': 0}
        >>> store.close()
    """

    def __init__(self, folder: str | Path, *, readonly: bool = False) -> None:
        self.path = store_path(folder)
        self.readonly = readonly
        if readonly:
            if not self.path.is_file():
                raise StoreError(f"no sweep store at {self.path}")
            try:
                self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
                self._check_schema()
            except sqlite3.Error as err:
                raise StoreError(f"cannot read sweep store {self.path}: {err}") from None
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create output folder {self.path.parent}: {err.strerror or err}") from None
        try:
            # isolation_level=None: transactions are opened explicitly with BEGIN IMMEDIATE,
            # so the write lock is taken before anything is read inside the transaction.
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode}, WAL is required")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            # Every statement is CREATE ... IF NOT EXISTS: safe to repeat and to race.
            self.conn.executescript(_SCHEMA)
            with self._transaction():
                self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (_now(),))
            self._check_schema()
        except sqlite3.Error as err:
            raise StoreError(f"cannot write sweep store {self.path}: {err}") from None

    # -- plumbing ---------------------------------------------------------------------

    def _check_schema(self) -> None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else None
        if version != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: store schema version {version}, this kvmem reads version {SCHEMA_VERSION}")

    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, kind, value, tb) -> None:
            self.conn.execute("COMMIT" if kind is None else "ROLLBACK")

    def _transaction(self) -> Store._Tx:
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only")
        return Store._Tx(self.conn)

    def close(self) -> None:
        """Close the connection (a WAL checkpoint happens when the last writer closes)."""
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------

    def add_sweep(self, sweep_id: str, experiment: str, profile: str, spec: Mapping[str, Any],
                  tasks: Sequence[PlannedTask]) -> None:
        """Record a sweep and plan its tasks (existing tasks and sweeps are kept as they are)."""
        with self._transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO sweeps VALUES (?, ?, ?, ?, ?)",
                         (sweep_id, experiment, profile, _dumps(dict(spec)), _now()))
            conn.executemany(
                "INSERT OR IGNORE INTO tasks (task_id, experiment, profile, config, config_hash, params, overrides,"
                " seed, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                [(t.task_id, t.experiment, t.profile, t.config, t.config_hash, _dumps(dict(t.params)),
                  _dumps(dict(t.overrides)), int(t.seed)) for t in tasks],
            )
            conn.executemany("INSERT OR IGNORE INTO sweep_tasks VALUES (?, ?, ?)",
                             [(sweep_id, t.task_id, i) for i, t in enumerate(tasks)])

    def finish(self, task_id: str, *, seconds: float, claims: list[dict[str, Any]], scalars: Mapping[str, Any],
               tables: Mapping[str, bytes], table_rows: Mapping[str, int], versions: Mapping[str, Any],
               worker: str, backend: str, table_format: str = "parquet") -> bool:
        """Store a finished task and all its tables in one transaction.

        Returns:
            True when the task was stored; False when it was already ``done`` (the
            duplicate is dropped and the stored row is left untouched).

        Raises:
            KeyError: ``task_id`` was never planned with :meth:`add_sweep`.
        """
        with self._transaction() as conn:
            status = conn.execute("SELECT status FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            if status is None:
                raise KeyError(f"task_id: {task_id!r} is not planned in {self.path}")
            if status[0] == "done":
                return False
            conn.execute(
                "UPDATE tasks SET status = 'done', seconds = ?, n_tables = ?, claims = ?, scalars = ?,"
                " versions = ?, error = NULL, finished = ?, worker = ?, backend = ?"
                " WHERE task_id = ? AND status != 'done'",
                (float(seconds), len(tables), _dumps(claims), _dumps(dict(scalars)), _dumps(dict(versions)), _now(),
                 worker, backend, task_id),
            )
            # Plain INSERT, not INSERT OR IGNORE: a second copy of a table would be a bug, and
            # the primary-key error rolls the whole task back instead of hiding it.
            conn.executemany(
                "INSERT INTO task_tables VALUES (?, ?, ?, ?, ?)",
                [(task_id, name, table_format, int(table_rows[name]), sqlite3.Binary(data))
                 for name, data in sorted(tables.items())],
            )
        return True

    def fail(self, task_id: str, error: str, *, worker: str = "", backend: str = "") -> bool:
        """Mark a task ``failed`` with its error text (a later sweep retries it).

        Returns:
            False when the task is already ``done`` (nothing changes).
        """
        with self._transaction() as conn:
            cur = conn.execute(
                "UPDATE tasks SET status = 'failed', error = ?, finished = ?, worker = ?, backend = ?"
                " WHERE task_id = ? AND status != 'done'",
                (error, _now(), worker, backend, task_id),
            )
            return cur.rowcount == 1

    # -- reading ----------------------------------------------------------------------

    def finished_ids(self) -> set[str]:
        """Ids of the tasks that are ``done``."""
        return {r[0] for r in self.conn.execute("SELECT task_id FROM tasks WHERE status = 'done'")}

    def counts(self) -> dict[str, int]:
        """Number of tasks by status."""
        counts = {"pending": 0, "done": 0, "failed": 0}
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status"):
            counts[status] = n
        return counts

    def sweeps(self) -> list[dict[str, Any]]:
        """Every sweep recorded in this store, oldest first, with its task count."""
        rows = self.conn.execute(
            "SELECT s.sweep_id, s.experiment, s.profile, s.spec, s.created, COUNT(st.task_id) FROM sweeps s"
            " LEFT JOIN sweep_tasks st ON st.sweep_id = s.sweep_id GROUP BY s.sweep_id ORDER BY s.created, s.rowid"
        ).fetchall()
        return [{"sweep_id": r[0], "experiment": r[1], "profile": r[2], "spec": json.loads(r[3]), "created": r[4],
                 "tasks": r[5]} for r in rows]

    def tasks(self, *, status: str | None = None) -> list[dict[str, Any]]:
        """Task rows as dicts with JSON columns decoded, ordered by experiment and plan position."""
        query = ("SELECT t.*, MIN(st.position) AS position FROM tasks t LEFT JOIN sweep_tasks st"
                 " ON st.task_id = t.task_id")
        args: tuple = ()
        if status is not None:
            query += " WHERE t.status = ?"
            args = (status,)
        query += " GROUP BY t.task_id ORDER BY t.experiment, position, t.task_id"
        cur = self.conn.execute(query, args)
        names = [d[0] for d in cur.description]
        rows = []
        for values in cur:
            row = dict(zip(names, values))
            for key in ("config", "params", "overrides", "claims", "scalars", "versions"):
                if row[key] is not None:
                    row[key] = json.loads(row[key])
            rows.append(row)
        return rows

    def table_names(self) -> list[str]:
        """Names of the result tables stored for any task."""
        return [r[0] for r in self.conn.execute("SELECT DISTINCT name FROM task_tables ORDER BY name")]

    def table_blobs(self, name: str) -> dict[str, tuple[str, bytes]]:
        """``task_id -> (format, bytes)`` of the table ``name`` over every task that has it."""
        cur = self.conn.execute("SELECT task_id, format, data FROM task_tables WHERE name = ?", (name,))
        return {task_id: (fmt, bytes(data)) for task_id, fmt, data in cur}

    def check(self) -> list[str]:
        """Consistency problems (empty when consistent): SQLite's integrity check, done tasks
        whose stored tables differ in number from what they reported, tables of tasks that
        are not done, planned ids without a task row."""
        problems: list[str] = []
        integrity = self.conn.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            problems += [f"integrity: {r[0]}" for r in integrity]
        for task_id, expected, found in self.conn.execute(
                "SELECT t.task_id, t.n_tables, COUNT(tt.name) FROM tasks t LEFT JOIN task_tables tt"
                " ON tt.task_id = t.task_id WHERE t.status = 'done' GROUP BY t.task_id"):
            if expected != found:
                problems.append(f"task {task_id} is done with {expected} tables but {found} are stored")
        for (task_id,) in self.conn.execute(
                "SELECT DISTINCT task_id FROM task_tables WHERE task_id NOT IN"
                " (SELECT task_id FROM tasks WHERE status = 'done')"):
            problems.append(f"tables stored for task {task_id}, which is not done")
        for (task_id,) in self.conn.execute("SELECT task_id FROM sweep_tasks WHERE task_id NOT IN"
                                            " (SELECT task_id FROM tasks)"):
            problems.append(f"sweep plans task {task_id}, which has no row")
        return problems

