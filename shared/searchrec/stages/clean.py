"""Clean stage: query filters, id-search purchase filter, item selection, history cut, temporal split.

DESIGN.md section 1 (training steps 2-4, inference step 2). Input: folders of part files in long
format (``artifacts.events``, one row per purchase x query) and the embeddings snapshot
(``artifacts.snapshot``). Output: an ``artifacts.examples`` folder with a ``funnel.json``: rows,
examples, users and items after each rule, in order.

The events are held as two frames: *purchases* (one row per example, ``pid`` as index; for
inference one row per user) and *queries* (``pid``, ``query_ts``, ``code``), where ``code`` indexes
the distinct raw query texts. The text rules of :mod:`searchrec.text` run once per distinct text;
every rule below is a vectorised function ``Events -> Events``.

This module runs in the CPU image: pyarrow, pandas, numpy and the standard library only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from searchrec import config
from searchrec.artifacts import events as event_parts
from searchrec.artifacts import examples, snapshot
from searchrec.errors import SearchrecError
from searchrec.text import MAX_QUERY_LENGTH, analyse_queries

logger = logging.getLogger(__name__)

TRAIN_KEY = ("user_id", "order_ts", "nm_id")
INFER_KEY = ("user_id",)
MIN_TRAIN_ITEMS = config.MIN_TRAIN_ITEMS


# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Events:
    """Long-format events split into purchases and their queries.

    ``purchases``: index ``pid``, the key columns (``user_id, order_ts, nm_id`` for training,
    ``user_id`` for inference). ``queries``: ``pid``, ``query_ts``, ``code``; ``code`` is a row of
    ``texts`` (the analysis of each distinct raw text, :func:`searchrec.text.analyse_queries`),
    ``-1`` for no text (its last row is the analysis of NULL).
    """

    purchases: pd.DataFrame
    queries: pd.DataFrame
    texts: pa.Table

    def flag(self, name: str) -> np.ndarray:
        """Column ``name`` of ``texts`` for each query row."""
        values = self.texts[name]
        if pa.types.is_boolean(values.type):
            array = values.to_numpy(zero_copy_only=False).astype(bool)
        else:
            array = values.to_numpy(zero_copy_only=False)
        return array[self.queries["code"].to_numpy()]

    def query_item_ids(self) -> np.ndarray:
        """The nm_id each query row names (:func:`searchrec.text.query_item_id`), -1 for none."""
        ids = pc.fill_null(self.texts["item_id"], -1).to_numpy()
        return ids[self.queries["code"].to_numpy()]

    def purchase_column(self, name: str) -> np.ndarray:
        """Column ``name`` of each query row's purchase."""
        return self.purchases[name].reindex(self.queries["pid"].to_numpy()).to_numpy()

    def keep_queries(self, keep: np.ndarray) -> Events:
        return replace(self, queries=self.queries[keep])

    def keep_purchases(self, keep: np.ndarray) -> Events:
        purchases = self.purchases[keep]
        queries = self.queries[self.queries["pid"].isin(purchases.index)]
        return replace(self, purchases=purchases, queries=queries)


def events_from_table(
    table: pa.Table, key: Sequence[str] = TRAIN_KEY, *, max_query_length: int = MAX_QUERY_LENGTH
) -> Events:
    """Build :class:`Events` from a long table (``artifacts.events.TRAIN_EVENTS`` or ``INFER_EVENTS`` columns).

    A row with NULL ``query_ts`` carries no query (the placeholder of a purchase without one).
    """
    key = list(key)
    texts = table["query_text"]
    # one dictionary for all chunks (unify_dictionaries transposes the indices if they differ)
    encoded = pa.table({"text": pc.dictionary_encode(texts)}).unify_dictionaries()["text"]
    if encoded.num_chunks:
        # codes in the texts' sorted order, not their order of first appearance: a warehouse returns rows
        # in any order, and the same rows must give the same events (ties in time are broken by code)
        unsorted = encoded.chunks[0].dictionary
        order = pc.sort_indices(unsorted).to_numpy()
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        dictionary = unsorted.take(pa.array(order))
        indices = pa.chunked_array([chunk.indices for chunk in encoded.chunks])
        codes = pc.fill_null(indices, -1).to_numpy().astype(np.int64)
        codes = np.where(codes >= 0, rank[np.maximum(codes, 0)], -1)
    else:
        dictionary, codes = pa.array([], pa.string()), np.empty(0, np.int64)
    codes[table["query_ts"].is_null().to_numpy(zero_copy_only=False)] = -1
    analysis = analyse_queries(
        pa.concat_arrays([dictionary.cast(pa.string()), pa.array([None], pa.string())]),
        max_length=max_query_length,
    )
    logger.info("analysed %d distinct query texts of %d rows", len(dictionary), table.num_rows)

    keys = table.select(key).to_pandas()
    pid = keys.groupby(key, sort=True, dropna=False).ngroup().to_numpy()  # numbered in key order, as codes
    purchases = keys.assign(pid=pid).drop_duplicates("pid").set_index("pid").sort_index()
    queries = pd.DataFrame(
        {"pid": pid, "query_ts": table["query_ts"].to_pandas(), "code": codes},
        index=pd.RangeIndex(len(codes)),
    )
    return Events(purchases=purchases, queries=queries, texts=analysis)


# --- rules ----------------------------------------------------------------------------------------


def drop_duplicate_rows(events: Events) -> Events:
    """Drop repeated rows: the same query (time and raw text) of the same purchase."""
    return replace(events, queries=events.queries.drop_duplicates(["pid", "query_ts", "code"]))


def drop_queries_after_order(events: Events) -> Events:
    """Drop queries typed at or after their purchase (a history is strictly before ``order_ts``)."""
    order_ts = events.purchase_column("order_ts")
    query_ts = events.queries["query_ts"].to_numpy()
    after = ~pd.isna(query_ts) & (query_ts >= order_ts)
    return events.keep_queries(~after)


def drop_items_without_embedding(events: Events, embedded_ids: np.ndarray) -> Events:
    """Drop purchases of items that have no embedding in the snapshot."""
    return events.keep_purchases(events.purchases["nm_id"].isin(embedded_ids).to_numpy())


def drop_id_search_purchases(events: Events) -> Events:
    """Drop purchases whose history names the purchased item itself.

    The item's ``nm_id`` typed as a query (``"123456"``, ``"арт 123456"``) or a link to its page
    (``https://www.wildberries.ru/catalog/123456/detail.aspx``): the user found the item by its id.
    """
    hits = events.query_item_ids() == events.purchase_column("nm_id")
    id_search = events.queries["pid"].to_numpy()[hits]
    return events.keep_purchases(~events.purchases.index.isin(id_search))


def drop_link_queries(events: Events) -> Events:
    """Drop queries that hold a link (``http(s)://``, ``www.``, a domain name)."""
    return events.keep_queries(~events.flag("is_link"))


def drop_digit_queries(events: Events) -> Events:
    """Drop queries that are only digits (after normalisation)."""
    return events.keep_queries(~events.flag("is_digit"))


def drop_article_queries(events: Events) -> Events:
    """Drop article-number queries (``"арт 12345678"``, ``"артикул: 123456"``, a bare 6-12 digit number)."""
    return events.keep_queries(~events.flag("is_article"))


def drop_empty_queries(events: Events) -> Events:
    """Drop queries that are NULL or empty after normalisation (whitespace, emoji, punctuation)."""
    return events.keep_queries(~events.flag("is_empty"))


def drop_examples_without_queries(events: Events) -> Events:
    """Drop purchases (users, for inference) with no query left."""
    return events.keep_purchases(events.purchases.index.isin(events.queries["pid"]))


def drop_short_histories(events: Events, min_history: int) -> Events:
    """Drop purchases (users, for inference) with fewer than ``min_history`` queries left."""
    counts = events.queries["pid"].value_counts()
    return events.keep_purchases(
        counts.reindex(events.purchases.index, fill_value=0).to_numpy() >= min_history
    )


def _sorted_queries(events: Events) -> pd.DataFrame:
    """Queries oldest first within each purchase (ties broken by the raw text: codes are in text order)."""
    return events.queries.sort_values(["pid", "query_ts", "code"], kind="stable")


def cut_history(events: Events, history_length: int) -> Events:
    """Keep the last ``history_length`` queries of each purchase (the most recent ones)."""
    queries = _sorted_queries(events)
    from_end = queries.groupby("pid", sort=False).cumcount(ascending=False).to_numpy()
    return replace(events, queries=queries[from_end < history_length])


def split_by_time(events: Events, holdout_start: pd.Timestamp) -> tuple[Events, Events]:
    """Split purchases by ``order_ts``: before ``holdout_start`` -> train, on/after -> holdout."""
    holdout = (events.purchases["order_ts"] >= holdout_start).to_numpy()
    return events.keep_purchases(~holdout), events.keep_purchases(holdout)


def select_training_items(events: Events, *, max_items: int, min_item_count: int) -> pd.DataFrame:
    """The training items: the ``max_items`` most purchased with at least ``min_item_count`` purchases.

    Returns ``examples.TRAIN_ITEMS`` columns (``nm_id``, ``count``), most frequent first, ties by nm_id.
    """
    counts = events.purchases["nm_id"].value_counts().rename("count").rename_axis("nm_id").reset_index()
    counts = counts[counts["count"] >= min_item_count]
    counts = counts.sort_values(["count", "nm_id"], ascending=[False, True], kind="stable").head(max_items)
    return counts.astype({"nm_id": "int64", "count": "int64"}).reset_index(drop=True)


def keep_training_items(events: Events, items: pd.DataFrame) -> Events:
    """Keep only purchases of the training items."""
    return events.keep_purchases(events.purchases["nm_id"].isin(items["nm_id"]).to_numpy())


def _history_lists(events: Events, order: np.ndarray) -> pa.ListArray:
    """Normalised query texts of each purchase, oldest first, purchases in the order of ``order`` (pids)."""
    rank = pd.Series(np.arange(len(order)), index=order)
    queries = _sorted_queries(events)
    ranks = rank.reindex(queries["pid"].to_numpy()).to_numpy()
    by_rank = np.argsort(ranks, kind="stable")
    codes = queries["code"].to_numpy()[by_rank]
    codes = np.where(codes < 0, events.texts.num_rows - 1, codes)  # -1: no text (the NULL row)
    counts = np.bincount(ranks, minlength=len(order)) if len(ranks) else np.zeros(len(order), np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    values = events.texts["text"].take(pa.array(codes, pa.int64())).combine_chunks()
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def to_examples(events: Events) -> pa.Table:
    """``examples.EXAMPLES``: one row per purchase, sorted by (order_ts, user_id, nm_id)."""
    purchases = events.purchases.sort_values(["order_ts", "user_id", "nm_id"], kind="stable")
    queries = _history_lists(events, purchases.index.to_numpy())
    columns = {
        name: pa.array(purchases[name].to_numpy(), examples.EXAMPLES.field(name).type) for name in TRAIN_KEY
    }
    return pa.table({**columns, "queries": queries}, schema=examples.EXAMPLES)


def to_histories(events: Events) -> pa.Table:
    """``examples.HISTORIES``: one row per user, sorted by user_id."""
    users = events.purchases.sort_values("user_id", kind="stable")
    queries = _history_lists(events, users.index.to_numpy())
    return pa.table(
        {"user_id": pa.array(users["user_id"].to_numpy(), pa.int64()), "queries": queries},
        schema=examples.HISTORIES,
    )


# --- funnel and stats -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelStep:
    """Counts after one rule. ``rows``: (purchase, query) rows; ``examples``: purchases (users, for inference)."""

    step: int
    rule: str
    split: str
    rows: int
    examples: int
    users: int
    items: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def count_events(events: Events, step: int, rule: str, split: str) -> FunnelStep:
    purchases = events.purchases
    return FunnelStep(
        step=step,
        rule=rule,
        split=split,
        rows=len(events.queries),
        examples=len(purchases),
        users=int(purchases["user_id"].nunique()),
        items=int(purchases["nm_id"].nunique()) if "nm_id" in purchases else None,
    )


@dataclass
class CleanStats:
    """What the clean stage did: the funnel, the output sizes and the parameters."""

    kind: str  # "train" or "infer"
    params: dict[str, Any]
    funnel: list[FunnelStep] = field(default_factory=list)
    outputs: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def step(self, rule: str) -> FunnelStep:
        """The funnel step of ``rule`` (the last one, if a rule appears twice)."""
        matches = [s for s in self.funnel if s.rule == rule]
        if not matches:
            raise KeyError(f"no funnel step {rule!r}; steps: {', '.join(s.rule for s in self.funnel)}")
        return matches[-1]

    def funnel_dicts(self) -> list[dict[str, Any]]:
        return [s.as_dict() for s in self.funnel]

    def funnel_markdown(self) -> str:
        """The funnel as a Markdown table (for a KFP Markdown output or a log)."""
        head = "| step | rule | split | rows | examples | users | items |\n|---:|---|---|---:|---:|---:|---:|"
        lines = [
            f"| {s.step:02d} | {s.rule} | {s.split} | {s.rows} | {s.examples} | {s.users} | "
            f"{'' if s.items is None else s.items} |"
            for s in self.funnel
        ]
        return "\n".join([head, *lines])

    def as_metadata(self) -> dict[str, Any]:
        """JSON-able dict for KFP artifact metadata: kind, parameters, output sizes, the funnel table."""
        return {
            "kind": self.kind,
            **self.params,
            **self.outputs,
            "seconds": round(self.seconds, 3),
            "funnel": self.funnel_dicts(),
        }

    def as_metrics(self) -> dict[str, float]:
        """Flat name -> number for KFP Metrics, e.g. ``funnel_06_drop_digit_queries_rows``."""
        metrics: dict[str, float] = {name: float(value) for name, value in self.outputs.items()}
        for s in self.funnel:
            for column in ("rows", "examples", "users", "items"):
                value = getattr(s, column)
                if value is not None:
                    metrics[f"funnel_{s.step:02d}_{s.rule}_{column}"] = float(value)
        return metrics


class _Funnel:
    """Applies rules in order, records counts and times, stops with one line when nothing is left."""

    def __init__(self, stats: CleanStats, what: str) -> None:
        self.stats = stats
        self.what = what
        self.next_step = 0

    def record(self, events: Events, rule: str, split: str, started: float, *, hint: str = "") -> Events:
        counts = count_events(events, self.next_step, rule, split)
        self.next_step += 1
        self.stats.funnel.append(counts)
        logger.info(
            "clean %02d %-30s %-8s rows=%d examples=%d users=%d items=%s (%.2fs)",
            counts.step, rule, split, counts.rows, counts.examples, counts.users,
            "-" if counts.items is None else counts.items, time.perf_counter() - started,
        )  # fmt: skip
        if hint and counts.examples == 0:
            raise SearchrecError(
                f"clean: no {self.what} left after rule '{rule}' (step {counts.step:02d}): {hint}"
            )
        return events

    def apply(
        self, events: Events, rule: str, fn: Callable[[Events], Events], split: str, hint: str
    ) -> Events:
        started = time.perf_counter()
        return self.record(fn(events), rule, split, started, hint=hint)


# --- IO -----------------------------------------------------------------------------------------------


def _write_outputs(out_dir: Path, tables: dict[str, pa.Table], stats: CleanStats) -> None:
    examples.write(Path(out_dir), tables, stats.funnel_dicts())


def _parse_start(holdout_start: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(holdout_start)
    except (ValueError, TypeError) as exc:
        raise SearchrecError(f"clean: holdout_start {holdout_start!r} is not a date (YYYY-MM-DD)") from exc
    if pd.isna(ts) or ts.tzinfo is not None:
        raise SearchrecError(
            f"clean: holdout_start {holdout_start!r} must be a date YYYY-MM-DD without time zone"
        )
    return ts


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SearchrecError(f"clean: {message}")


# --- the stage ------------------------------------------------------------------------------------


QUERY_RULES: tuple[tuple[str, Callable[[Events], Events]], ...] = (
    ("drop_link_queries", drop_link_queries),
    ("drop_digit_queries", drop_digit_queries),
    ("drop_article_queries", drop_article_queries),
    ("drop_empty_queries", drop_empty_queries),
)


def _apply_query_rules(events: Events, funnel: _Funnel) -> Events:
    for rule, fn in QUERY_RULES:
        events = funnel.apply(events, rule, fn, "all", "")
    return events


def _training_rules(
    events: Events, funnel: _Funnel, embedded: np.ndarray, embeddings_dir: Path, history_length: int
) -> Events:
    """DESIGN.md training steps 2 and 4: duplicates, leaks, items without embedding, id searches,
    query filters, examples left without queries, the history cut; each a funnel step."""
    events = funnel.apply(events, "drop_duplicate_rows", drop_duplicate_rows, "all", "")
    events = funnel.apply(events, "drop_queries_after_order", drop_queries_after_order, "all", "")
    events = funnel.apply(
        events,
        "drop_items_without_embedding",
        lambda e: drop_items_without_embedding(e, embedded),
        "all",
        f"no purchased item has an embedding in {embeddings_dir} ({len(embedded)} items there)",
    )
    events = funnel.apply(
        events,
        "drop_id_search_purchases",
        drop_id_search_purchases,
        "all",
        "every purchase was found by its id",
    )
    events = _apply_query_rules(events, funnel)
    events = funnel.apply(
        events,
        "drop_examples_without_queries",
        drop_examples_without_queries,
        "all",
        "no purchase has a usable query in its history",
    )
    return funnel.apply(events, "cut_history", lambda e: cut_history(e, history_length), "all", "")


def _keep_training_items(
    train: Events,
    funnel: _Funnel,
    *,
    max_items: int,
    min_item_count: int,
    min_train_items: int,
    min_train_examples: int,
) -> tuple[Events, pd.DataFrame]:
    """DESIGN.md training step 3: the most frequent items; refuses a training set too small to learn from."""
    t0 = time.perf_counter()
    most = int(train.purchases["nm_id"].value_counts().max())
    items = select_training_items(train, max_items=max_items, min_item_count=min_item_count)
    train = keep_training_items(train, items)
    funnel.record(train, "keep_training_items", "train", t0)
    step = funnel.stats.funnel[-1].step
    if len(items) < min_train_items:
        raise SearchrecError(
            f"clean: {len(items)} training item(s) left after rule 'keep_training_items' "
            f"(step {step:02d}), need at least {min_train_items} (min_train_items): "
            f"an item needs >= {min_item_count} training purchases (min_item_count), the most frequent has {most}"
        )
    if len(train.purchases) < min_train_examples:
        raise SearchrecError(
            f"clean: {len(train.purchases)} training example(s) left after rule 'keep_training_items' "
            f"(step {step:02d}), need at least {min_train_examples} (min_train_examples)"
        )
    return train, items


def _training_tables(
    train: Events, holdout: Events, items: pd.DataFrame, stats: CleanStats
) -> dict[str, pa.Table]:
    train_table, holdout_table = to_examples(train), to_examples(holdout)
    items_table = pa.Table.from_pandas(items, schema=examples.TRAIN_ITEMS, preserve_index=False)
    stats.outputs = {
        "train_examples": train_table.num_rows,
        "holdout_examples": holdout_table.num_rows,
        "train_items": items_table.num_rows,
        "holdout_items": int(holdout.purchases["nm_id"].nunique()),
        "holdout_examples_of_training_items": int(holdout.purchases["nm_id"].isin(items["nm_id"]).sum()),
    }
    return {
        examples.split_file("train"): train_table,
        examples.split_file("holdout"): holdout_table,
        examples.ITEMS_FILE: items_table,
    }


def _training_stats(**params: Any) -> CleanStats:
    _require(params["max_items"] >= 1, f"max_items must be >= 1, got {params['max_items']}")
    for name in ("min_item_count", "history_length", "min_train_examples", "min_train_items"):
        _require(params[name] >= 1, f"{name} must be >= 1, got {params[name]}")
    return CleanStats(kind="train", params=params)


def clean_training_events(
    events_dir: Path,
    embeddings_dir: Path,
    out_dir: Path,
    *,
    holdout_start: str,
    max_items: int = config.MAX_ITEMS,
    min_item_count: int = config.MIN_ITEM_COUNT,
    history_length: int = config.HISTORY_LENGTH,
    min_train_examples: int = 1,
    min_train_items: int = MIN_TRAIN_ITEMS,
    max_query_length: int = MAX_QUERY_LENGTH,
) -> CleanStats:
    """Clean training events into train / holdout examples and the training items.

    Writes ``train.parquet`` and ``holdout.parquet``, ``items.parquet`` and ``funnel.json`` as an
    examples artifact (``searchrec.artifacts.examples``). Purchases with ``order_ts >= holdout_start``
    form the holdout, which keeps every item with an embedding; the training items and their counts
    come from the earlier purchases only.
    """
    started = time.perf_counter()
    stats = _training_stats(
        holdout_start=str(holdout_start),
        max_items=max_items,
        min_item_count=min_item_count,
        history_length=history_length,
        min_train_examples=min_train_examples,
        min_train_items=min_train_items,
        max_query_length=max_query_length,
    )
    start = _parse_start(holdout_start)
    funnel = _Funnel(stats, "training purchases")
    table = event_parts.read(Path(events_dir), event_parts.TRAIN_EVENTS, "training events")
    embedded = snapshot.read_ids(Path(embeddings_dir))
    t0 = time.perf_counter()
    cleaned = events_from_table(table, TRAIN_KEY, max_query_length=max_query_length)
    del table
    cleaned = funnel.record(cleaned, "input", "all", t0, hint=f"the events in {events_dir} hold no purchase")
    cleaned = _training_rules(cleaned, funnel, embedded, Path(embeddings_dir), history_length)
    t0 = time.perf_counter()
    train, holdout = split_by_time(cleaned, start)
    del cleaned
    funnel.record(holdout, "split_holdout", "holdout", t0)
    funnel.record(train, "split_train", "train", t0, hint=f"no purchase before holdout_start {holdout_start}")
    train, items = _keep_training_items(
        train,
        funnel,
        max_items=max_items,
        min_item_count=min_item_count,
        min_train_items=min_train_items,
        min_train_examples=min_train_examples,
    )
    if len(holdout.purchases) == 0:
        logger.warning("clean: the holdout is empty (no cleaned purchase on or after %s)", holdout_start)
    tables = _training_tables(train, holdout, items, stats)
    stats.seconds = time.perf_counter() - started
    _write_outputs(Path(out_dir), tables, stats)
    logger.info("clean (train) done in %.2fs: %s", stats.seconds, stats.outputs)
    return stats


def _bought_table(orders_dir: Path, users: pa.Array) -> pa.Table:
    """Distinct (user_id, nm_id) purchases of the served users, sorted."""
    orders = event_parts.read(orders_dir, event_parts.ORDERS, "orders")
    bought = orders.select(["user_id", "nm_id"]).group_by(["user_id", "nm_id"]).aggregate([])
    bought = bought.filter(pc.is_in(bought["user_id"], users))
    return bought.sort_by([("user_id", "ascending"), ("nm_id", "ascending")]).cast(examples.BOUGHT)


def clean_inference_events(
    events_dir: Path,
    out_dir: Path,
    *,
    history_length: int = config.HISTORY_LENGTH,
    min_history: int = config.MIN_HISTORY,
    orders_dir: Path | None = None,
    max_query_length: int = MAX_QUERY_LENGTH,
) -> CleanStats:
    """Clean users' query histories for inference the same way as for training.

    Writes ``histories.parquet`` (last ``history_length`` queries per user, oldest first) and
    ``funnel.json``; with ``orders_dir`` (orders part files) also ``bought.parquet`` (distinct
    user_id, nm_id of the kept users). Users with fewer than ``min_history`` usable queries are
    dropped and counted.
    """
    started = time.perf_counter()
    _require(history_length >= 1, f"history_length must be >= 1, got {history_length}")
    _require(min_history >= 1, f"min_history must be >= 1, got {min_history}")
    stats = CleanStats(
        kind="infer",
        params={
            "history_length": history_length,
            "min_history": min_history,
            "max_query_length": max_query_length,
        },
    )
    funnel = _Funnel(stats, "users")
    table = event_parts.read(Path(events_dir), event_parts.INFER_EVENTS, "inference events")
    t0 = time.perf_counter()
    cleaned = events_from_table(table, INFER_KEY, max_query_length=max_query_length)
    del table
    cleaned = funnel.record(cleaned, "input", "all", t0, hint=f"the events in {events_dir} hold no user")
    cleaned = funnel.apply(cleaned, "drop_duplicate_rows", drop_duplicate_rows, "all", "")
    cleaned = _apply_query_rules(cleaned, funnel)
    before = len(cleaned.purchases)
    cleaned = funnel.apply(
        cleaned,
        "drop_short_histories",
        lambda e: drop_short_histories(e, min_history),
        "all",
        f"no user has at least {min_history} usable queries (min_history)",
    )
    short = before - len(cleaned.purchases)
    cleaned = funnel.apply(cleaned, "cut_history", lambda e: cut_history(e, history_length), "histories", "")
    histories = to_histories(cleaned)
    tables = {examples.split_file(examples.INFER_SPLIT): histories}
    stats.outputs = {"users": histories.num_rows, "short_history_users": short}
    if orders_dir is not None:
        tables[examples.BOUGHT_FILE] = _bought_table(Path(orders_dir), histories["user_id"])
        stats.outputs["bought_pairs"] = tables[examples.BOUGHT_FILE].num_rows
    stats.seconds = time.perf_counter() - started
    _write_outputs(Path(out_dir), tables, stats)
    logger.info("clean (infer) done in %.2fs: %s", stats.seconds, stats.outputs)
    return stats
