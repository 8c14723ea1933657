"""The warehouse: run the project's SQL on PostgreSQL / Greenplum or DuckDB and stream rows to Parquet.

URIs:
  ``postgresql://host:port/db[?options=...]``  psycopg2; the user and password come from the
      environment (PGUSER / PGPASSWORD, read by libpq) or a user name in the URI. A URI that carries
      a password is refused, so that it can never reach a log line, artifact metadata or YAML.
  ``duckdb:///path/to/file.duckdb``  the embedded local warehouse, opened read-only; the path is what
      follows ``duckdb:///`` (relative to the working directory; ``duckdb:////abs/path`` absolute).

SQL lives in ``sql/<name>.sql`` with ``:name`` placeholders (outside comments and string literals);
``render_sql`` translates them to the driver's bound-parameter style (``%(name)s`` / ``$name``).
Rows are streamed in bounded chunks (a named server-side cursor on PostgreSQL, an Arrow record
batch reader on DuckDB) into ``part-NNNNN.parquet`` files of a staging folder that is renamed onto
the target only when every row has been written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from searchrec.artifacts import events, folder
from searchrec.errors import SearchrecError
from searchrec.secrets import carries_password

log = logging.getLogger(__name__)

SCHEMES = ("postgresql", "postgres", "duckdb")
CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF_S = 0.5  # first retry delay; doubles each attempt
CONNECT_TIMEOUT_S = 10
USERS_TABLE = "searchrec_users"  # the relation infer_events.sql joins for the optional user list

# :name outside '...' literals, "..." identifiers and -- comments; '::' casts are left alone.
_TOKEN = re.compile(r"""('(?:[^']|'')*')|("(?:[^"]|"")*")|(--[^\n]*)|(?<![:\w]):([A-Za-z_]\w*)|(%)""")


# --- URIs -----------------------------------------------------------------------------------------


def redact(uri: str) -> str:
    """The URI with any password replaced by ``***`` (safe to log)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def display_uri(uri: str) -> str:
    """Short, password-free name of a warehouse for messages: scheme://host:port/db or the duckdb path."""
    parts = urlsplit(uri)
    if parts.scheme == "duckdb":
        return uri
    port = parts.port or 5432
    return f"{parts.scheme}://{parts.hostname or 'localhost'}:{port}{parts.path}"


def check_uri(uri: str) -> str:
    """Validate a warehouse URI; return its engine (``postgresql`` or ``duckdb``)."""
    if not isinstance(uri, str) or "://" not in uri:
        raise SearchrecError(
            f"warehouse URI {uri!r} is not postgresql://host:port/db or duckdb:///path/to/file.duckdb"
        )
    parts = urlsplit(uri)
    if parts.scheme not in SCHEMES:
        raise SearchrecError(
            f"warehouse URI scheme {parts.scheme!r} is not supported; use postgresql:// or duckdb://"
        )
    if parts.scheme == "duckdb":
        if not uri.startswith("duckdb:///") or len(uri) == len("duckdb:///"):
            raise SearchrecError(f"warehouse URI {uri!r}: expected duckdb:///path/to/file.duckdb")
        return "duckdb"
    if carries_password(uri):
        shown = redact(uri) if parts.password is not None else display_uri(uri)
        raise SearchrecError(
            f"warehouse URI {shown} carries a password; pass it as PGPASSWORD (a Kubernetes Secret) instead"
        )
    if not parts.path.strip("/"):
        raise SearchrecError(f"warehouse URI {redact(uri)} names no database (postgresql://host:port/db)")
    return "postgresql"


def duckdb_path(uri: str) -> Path:
    """The file of a ``duckdb:///<path>`` URI: what follows ``duckdb:///`` (SQLAlchemy style).

    ``duckdb:///data/demo/w.duckdb`` is relative to the working directory, ``duckdb:////abs/w.duckdb``
    absolute. A three-slash URI whose relative file does not exist but whose absolute reading does
    (``f"duckdb://{abs_path}"``) is taken as absolute.
    """
    rest = uri[len("duckdb:///") :]
    path = Path(rest)
    if not path.is_absolute() and not path.exists() and Path("/" + rest).is_file():
        return Path("/" + rest)
    return path


# --- SQL ------------------------------------------------------------------------------------------


def load_sql(name: str) -> str:
    """Text of ``sql/<name>.sql`` (installed as package data ``searchrec/sql``)."""
    path = resources.files("searchrec").joinpath("sql", f"{name}.sql")
    if not path.is_file():
        raise SearchrecError(f"no SQL file sql/{name}.sql")
    return path.read_text(encoding="utf-8")


def sql_parameters(sql: str) -> list[str]:
    """Names of the ``:name`` placeholders of a SQL text, in order of first use."""
    names: list[str] = []
    for m in _TOKEN.finditer(sql):
        if m.group(4) and m.group(4) not in names:
            names.append(m.group(4))
    return names


def render_sql(sql: str, engine: str) -> str:
    """Translate ``:name`` placeholders to ``%(name)s`` (psycopg2) or ``$name`` (DuckDB).

    Comments and string literals are left as they are; for psycopg2 a literal ``%`` outside them is
    doubled so that the driver does not read it as a placeholder.
    """
    if engine not in ("postgresql", "duckdb"):
        raise ValueError(f"unknown engine {engine!r}")

    def sub(m: re.Match[str]) -> str:
        if m.group(4):
            return f"%({m.group(4)})s" if engine == "postgresql" else f"${m.group(4)}"
        if m.group(5):
            return "%%" if engine == "postgresql" else "%"
        text = m.group(0)
        # psycopg2 scans the whole text, literals and comments included
        return text.replace("%", "%%") if engine == "postgresql" else text

    return _TOKEN.sub(sub, sql)


def _check_params(sql: str, params: dict[str, Any]) -> None:
    wanted, given = set(sql_parameters(sql)), set(params)
    if wanted != given:
        raise ValueError(f"SQL parameters {sorted(wanted)} but given {sorted(given)}")


# --- connections ----------------------------------------------------------------------------------


def _connect_once(uri: str, engine: str) -> Any:
    if engine == "duckdb":
        import duckdb

        path = duckdb_path(uri)
        if not path.is_file():
            raise SearchrecError(f"warehouse {display_uri(uri)}: no such DuckDB file {path.absolute()}")
        return duckdb.connect(str(path), read_only=True)
    import psycopg2

    return psycopg2.connect(uri, connect_timeout=CONNECT_TIMEOUT_S, application_name="searchrec")


def _is_connection_error(exc: BaseException) -> bool:
    import psycopg2

    return isinstance(exc, psycopg2.OperationalError)


def connect(uri: str, *, attempts: int | None = None, backoff_s: float | None = None) -> Any:
    """Open a DB-API connection; connection failures are retried with exponential backoff.

    Defaults: module settings CONNECT_ATTEMPTS (3) and CONNECT_BACKOFF_S (0.5 s, doubling).
    After ``attempts`` failures: SearchrecError("warehouse postgresql://h:5432/db unreachable after 3
    attempts: <driver's first line>"). Passwords never appear in the message.
    """
    attempts = CONNECT_ATTEMPTS if attempts is None else attempts
    backoff_s = CONNECT_BACKOFF_S if backoff_s is None else backoff_s
    engine = check_uri(uri)
    name = display_uri(uri)
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            t0 = time.perf_counter()
            conn = _connect_once(uri, engine)
            log.info("connected to warehouse %s in %.2fs", name, time.perf_counter() - t0)
            return conn
        except SearchrecError:
            raise
        except Exception as exc:  # driver errors vary; only connection errors are retried
            if engine == "duckdb" or not _is_connection_error(exc):
                raise SearchrecError(f"warehouse {name}: cannot connect: {_first_line(exc, uri)}") from exc
            last = _first_line(exc, uri)
            if attempt < attempts:
                delay = backoff_s * 2 ** (attempt - 1)
                log.warning(
                    "warehouse %s: attempt %d/%d failed (%s); retrying in %.1fs",
                    name,
                    attempt,
                    attempts,
                    last,
                    delay,
                )
                time.sleep(delay)
    tries = f"{attempts} attempts" if attempts != 1 else "1 attempt"
    raise SearchrecError(f"warehouse {name} unreachable after {tries}: {last}")


def _first_line(exc: BaseException, uri: str = "") -> str:
    text = str(exc).strip().splitlines()
    line = text[0].strip() if text else type(exc).__name__
    parts = urlsplit(uri) if uri else None
    if parts is not None and parts.password:
        line = line.replace(parts.password, "***")
    return line


@contextmanager
def connection(uri: str, **kwargs: Any) -> Iterator[Any]:
    conn = connect(uri, **kwargs)
    try:
        yield conn
    finally:
        conn.close()


def first_row(conn: Any, uri: str, query: str, params: dict[str, Any]) -> tuple | None:
    """The first row of ``sql/<query>.sql`` (a short probe, not an extract), or None when it is empty."""
    sql = load_sql(query)
    _check_params(sql, params)
    engine = check_uri(uri)
    try:
        if engine == "duckdb":
            return conn.execute(render_sql(sql, engine), params).fetchone()
        with conn.cursor() as cur:
            cur.execute(render_sql(sql, engine), params)
            return cur.fetchone()
    except SearchrecError:
        raise
    except Exception as exc:
        raise _query_error(exc, uri, query) from None


# --- streaming ------------------------------------------------------------------------------------


@dataclass
class StreamResult:
    rows: int
    files: list[str]
    bytes: int
    seconds: float
    distinct: int | None = None  # distinct values of the count_distinct column


def _query_error(exc: BaseException, uri: str, query: str) -> SearchrecError:
    """Map a driver error to one clear line (missing table, bad SQL, lost connection)."""
    msg = _first_line(exc, uri)
    name = display_uri(uri)
    m = re.search(r'relation "([^"]+)" does not exist', msg) or re.search(
        r"Table with name (\S+) does not exist", msg
    )
    if m:
        return SearchrecError(f"warehouse {name} has no table {m.group(1)} (needed by sql/{query}.sql)")
    return SearchrecError(f"warehouse {name}: sql/{query}.sql failed: {msg}")


def bind_parameters(conn: Any, sql: str, params: dict[str, Any]) -> str:
    """``sql`` with its parameters rendered as literals by the driver (psycopg2's quoting, the same
    escaping a server-side bind gets): COPY takes no bind parameters."""
    with conn.cursor() as cur:
        return cur.mogrify(sql, params).decode(conn.encoding and "utf-8")


def _csv_options(schema: pa.Schema, block_bytes: int) -> dict[str, Any]:
    """pyarrow CSV options that read PostgreSQL's CSV exactly: NULL is an unquoted empty field, ''
    a quoted one; values may hold newlines and quotes; timestamps are ISO."""
    return {
        "read_options": pacsv.ReadOptions(column_names=schema.names, block_size=block_bytes),
        "parse_options": pacsv.ParseOptions(newlines_in_values=True),
        "convert_options": pacsv.ConvertOptions(
            column_types=schema,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    }


def _conversion_error(message: str, schema: pa.Schema) -> str:
    """A column of the wrong type, named: 'column query_ts does not hold timestamp[us] values: ...'."""
    first = message.splitlines()[0]
    m = re.search(r"CSV column #(\d+)", first)
    if m and int(m.group(1)) < len(schema):
        field = schema.field(int(m.group(1)))
        return f"column {field.name} does not hold {field.type} values: {first}"
    return f"cannot read the query's rows: {first}"


def _pg_batches(
    conn: Any, sql: str, params: dict[str, Any], schema: pa.Schema, chunk_rows: int
) -> Iterator[pa.RecordBatch]:
    """``COPY (query) TO STDOUT (FORMAT csv)`` parsed by pyarrow's streaming CSV reader, as record batches.

    The server formats rows (on Greenplum, every segment in parallel) and the client parses text in C,
    with no Python object per value. psycopg2 pushes the COPY stream into a pipe from a thread while
    pyarrow pulls blocks from the other end, so memory stays bounded by a block, not the window.
    """
    with conn.cursor() as cur:
        cur.execute("SET DateStyle TO 'ISO, YMD'")
    copy_sql = f"COPY ({bind_parameters(conn, sql, params).rstrip().rstrip(';')}) TO STDOUT WITH (FORMAT csv)"
    read_fd, write_fd = os.pipe()
    reader_end, writer_end = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
    failure: list[BaseException] = []

    def pump() -> None:
        try:
            with conn.cursor() as cur:
                cur.copy_expert(copy_sql, writer_end, size=1 << 20)
        except BaseException as exc:  # handed to the reading side
            failure.append(exc)
        finally:
            with contextlib.suppress(OSError):
                writer_end.close()

    thread = threading.Thread(target=pump, name="searchrec-copy", daemon=True)
    thread.start()
    try:
        block = max(1 << 20, min(64 << 20, chunk_rows * 64))
        try:
            for batch in pacsv.open_csv(reader_end, **_csv_options(schema, block)):
                if batch.num_rows:
                    yield batch
        except (pa.ArrowInvalid, OSError) as exc:
            thread.join()  # the writer's own error, if any, is the one to report
            if not failure and "Empty CSV file" not in str(exc):  # no rows: nothing to yield
                raise SearchrecError(_conversion_error(str(exc), schema)) from exc
    finally:
        reader_end.close()  # a writer still pumping gets EPIPE and ends
        thread.join()
    if failure:
        raise failure[0]


def _duckdb_batches(
    conn: Any, sql: str, params: dict[str, Any], schema: pa.Schema, chunk_rows: int
) -> Iterator[pa.RecordBatch]:
    """Record batches of a DuckDB relation; the reader pulls them as they are consumed (no full copy)."""
    relation = conn.sql(sql, params=params)
    if hasattr(relation, "to_arrow_reader"):
        reader = relation.to_arrow_reader(chunk_rows)
    else:  # DuckDB 1.x
        reader = relation.fetch_record_batch(chunk_rows)
    for batch in reader:
        if batch.num_rows:
            yield _cast(batch.rename_columns(schema.names), schema)


def _cast(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` as ``schema``; a column that cannot be converted is named in one line."""
    for field, column in zip(schema, batch.columns, strict=True):
        if not column.type.equals(field.type):
            try:
                column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SearchrecError(
                    f"column {field.name} is {column.type}, not convertible to {field.type}: {str(exc).splitlines()[0]}"
                ) from None
    return batch.cast(schema)


def rechunk(batches: Iterator[pa.RecordBatch], schema: pa.Schema, chunk_rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``chunk_rows`` rows (the last one shorter) from batches of any size.

    DuckDB hands out batches up to the requested size but often smaller; re-chunking keeps part
    files even in size while holding at most about two chunks in memory.
    """
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= chunk_rows:
            table = pa.Table.from_batches(pending, schema=schema)
            yield table.slice(0, chunk_rows)
            rest = table.slice(chunk_rows)
            pending, pending_rows = rest.to_batches(), rest.num_rows
    if pending_rows:
        yield pa.Table.from_batches(pending, schema=schema)


def prepare_users_table(conn: Any, engine: str, user_ids: pa.Array | None) -> None:
    """Make ``searchrec_users(user_id)`` visible to the next query: distinct ids, empty when None.

    PostgreSQL: a TEMP table filled by COPY (streamed, not one INSERT per id). DuckDB: the Arrow
    table registered as a view.
    """
    ids = pa.array([], pa.int64()) if user_ids is None else user_ids.cast(pa.int64()).unique().drop_null()
    if engine == "duckdb":
        conn.register(USERS_TABLE, pa.table({"user_id": ids}))
        return
    import io

    with conn.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE {USERS_TABLE} (user_id BIGINT NOT NULL) ON COMMIT DROP")
        step = 1_000_000
        for start in range(0, len(ids), step):
            chunk = ids.slice(start, step).to_numpy(zero_copy_only=False)
            buf = io.BytesIO(("\n".join(map(str, chunk.tolist())) + "\n").encode())
            cur.copy_expert(f"COPY {USERS_TABLE} (user_id) FROM STDIN", buf)
        cur.execute(f"ANALYZE {USERS_TABLE}")
    log.info("user list: %d distinct ids copied into TEMP table %s", len(ids), USERS_TABLE)


class _PartWriter:
    """Writes chunks as ``part-NNNNN.parquet`` into an events folder, counting rows, bytes and distinct ids."""

    def __init__(self, out_dir: Path, query: str, chunk_rows: int, count_distinct: str | None):
        self.out_dir, self.query, self.chunk_rows, self.count_distinct = (
            out_dir,
            query,
            chunk_rows,
            count_distinct,
        )
        self.files: list[str] = []
        self.rows = self.bytes = 0
        self.seen: list[pa.Array] = []
        self.seen_len = 0
        self.started = self.last_report = time.perf_counter()

    def write(self, table: pa.Table) -> None:
        path = self.out_dir / events.part_name(len(self.files))
        pq.write_table(table, path, compression="zstd")
        self.files.append(path.name)
        self.rows += table.num_rows
        self.bytes += path.stat().st_size
        if self.count_distinct is not None and table.num_rows:
            self.seen.append(pc.unique(table.column(self.count_distinct)))
            self.seen_len += len(self.seen[-1])
            if self.seen_len > 4 * max(self.chunk_rows, 1_000_000):  # compact as the uniques grow
                self.seen = [pc.unique(pa.concat_arrays(self.seen))]
                self.seen_len = len(self.seen[0])
        self._report()

    def _report(self, every_s: float = 10.0) -> None:
        if time.perf_counter() - self.last_report < every_s:
            return
        self.last_report = time.perf_counter()
        elapsed = self.last_report - self.started
        log.info(
            "%s: %d rows, %d files, %.1f MB so far (%.0f rows/s)",
            self.query,
            self.rows,
            len(self.files),
            self.bytes / 1e6,
            self.rows / max(elapsed, 1e-9),
        )

    def distinct(self) -> int | None:
        if self.count_distinct is None:
            return None
        return len(pc.unique(pa.concat_arrays(self.seen))) if self.seen else 0


def stream_to_parquet(
    uri: str,
    query: str,
    params: dict[str, Any],
    schema: pa.Schema,
    out_dir: Path,
    *,
    chunk_rows: int,
    user_ids: pa.Array | None = None,
    on_empty: Callable[[], SearchrecError] | None = None,
    count_distinct: str | None = None,
) -> StreamResult:
    """Run ``sql/<query>.sql`` with ``params`` and write its rows to ``out_dir/part-NNNNN.parquet``.

    One part file per chunk of ``chunk_rows`` rows (the last one shorter), so client memory stays bounded
    by the chunk whatever the window. ``out_dir`` is an events artifact (``searchrec.artifacts.events``):
    complete only once every part is there; any failure leaves nothing of it. When the query returns
    no rows, ``on_empty()`` is raised if given, else one empty part file with the schema is written.
    ``user_ids`` is only used by queries that join ``searchrec_users``. ``count_distinct`` names a
    column whose distinct values are counted on the way (per-chunk uniques, compacted as they grow).
    """
    if chunk_rows < 1:
        raise SearchrecError(f"chunk_rows must be >= 1, got {chunk_rows}")
    engine = check_uri(uri)
    raw = load_sql(query)
    _check_params(raw, params)
    sql = render_sql(raw, engine)
    with folder.publishing(out_dir, events.KIND) as path, connection(uri) as conn:
        parts = _PartWriter(path, query, chunk_rows, count_distinct)
        _run_streaming(conn, engine, uri, query, raw, sql, params, schema, chunk_rows, user_ids, parts)
        if parts.rows == 0:
            if on_empty is not None:
                raise on_empty()
            parts.write(schema.empty_table())
        if engine == "postgresql":
            _end_read_only(conn, uri)
    seconds = time.perf_counter() - parts.started
    log.info(
        "%s from %s: %d rows in %d files (%.1f MB) to %s in %.1fs (%.0f rows/s)",
        query,
        display_uri(uri),
        parts.rows,
        len(parts.files),
        parts.bytes / 1e6,
        out_dir,
        seconds,
        parts.rows / max(seconds, 1e-9),
    )
    return StreamResult(
        rows=parts.rows, files=parts.files, bytes=parts.bytes, seconds=seconds, distinct=parts.distinct()
    )


# The source contract (DESIGN.md section 2): column -> accepted type families, per table.
CONTRACT = {
    "search_queries": {"user_id": "integer", "query_ts": "timestamp", "query_text": "text"},
    "orders": {"user_id": "integer", "order_ts": "timestamp", "nm_id": "integer"},
}
_FAMILIES = {
    "integer": ("bigint", "integer", "smallint", "int8", "int4", "int2", "hugeint", "ubigint", "uinteger"),
    "timestamp": ("timestamp",),
    "text": ("text", "character varying", "varchar", "character", "char", "string"),
}


def _column_types(conn: Any, engine: str, table: str) -> dict[str, str]:
    """column -> declared type of ``table`` as the session sees it (empty if there is no such table)."""
    if engine == "duckdb":
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?", [table]
        ).fetchall()
    else:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema = ANY (current_schemas(false))",
                (table,),
            )
            rows = cur.fetchall()
    return {name.lower(): str(kind).lower() for name, kind in rows}


def check_source_columns(conn: Any, engine: str, uri: str, raw_sql: str) -> None:
    """The contract's columns and types in every source table the query reads; one line naming the
    table and column otherwise (a missing table is left to the query's own error)."""
    for table, columns in CONTRACT.items():
        if not re.search(rf"\b{table}\b", raw_sql):
            continue
        declared = _column_types(conn, engine, table)
        if not declared:
            continue
        for column, family in columns.items():
            kind = declared.get(column)
            if kind is None:
                raise SearchrecError(f"warehouse {display_uri(uri)}: table {table} has no column {column}")
            if not kind.startswith(_FAMILIES[family]):
                raise SearchrecError(
                    f"warehouse {display_uri(uri)}: column {table}.{column} is {kind}, the contract says {family}"
                )


def _end_read_only(conn: Any, uri: str) -> None:
    """Roll back the read-only session (drops the TEMP table). Every row has arrived by then, so a
    connection lost at this point costs nothing but a warning."""
    try:
        conn.rollback()
    except Exception as exc:
        log.warning(
            "warehouse %s: rollback after the extract failed: %s", display_uri(uri), _first_line(exc, uri)
        )


def _run_streaming(
    conn: Any,
    engine: str,
    uri: str,
    query: str,
    raw: str,
    sql: str,
    params: dict[str, Any],
    schema: pa.Schema,
    chunk_rows: int,
    user_ids: pa.Array | None,
    parts: _PartWriter,
) -> None:
    """The query's rows, re-chunked, into ``parts``; driver errors become one line."""
    try:
        check_source_columns(conn, engine, uri, raw)
        if USERS_TABLE in raw:
            prepare_users_table(conn, engine, user_ids)
        batches = (_duckdb_batches if engine == "duckdb" else _pg_batches)(
            conn, sql, params, schema, chunk_rows
        )
        for batch in rechunk(batches, schema, chunk_rows):
            parts.write(batch)
    except SearchrecError as error:
        if str(error).startswith("warehouse "):
            raise
        raise SearchrecError(f"warehouse {display_uri(uri)}: sql/{query}.sql: {error}") from None
    except Exception as exc:
        if engine == "postgresql" and conn.closed:
            raise SearchrecError(
                f"warehouse {display_uri(uri)}: connection lost during sql/{query}.sql after {parts.rows} rows: "
                f"{_first_line(exc, uri)}"
            ) from exc
        raise _query_error(exc, uri, query) from exc
