"""Seeded, deterministic demo data: a small Russian marketplace with search history, orders and
bert4rec-like item embeddings, plus the ground truth that bounds what any model can reach.

Layout of the output folder (written to a temp folder next to it, renamed at the end):

    warehouse.duckdb                         tables search_queries, orders (sql/ddl.sql)
    embeddings/dt=YYYY-MM-DD/part-0.parquet  snapshot.EMBEDDINGS, one folder per snapshot
    ground_truth/purchases.parquet           user_id, order_ts, nm_id, intent_id, matches_intent, id_search
    ground_truth/intents.parquet             intent_id, kind, category, colour, brand, query, weight, nm_ids
    ground_truth/items.parquet               the catalogue: nm_id, category, brand, colour, launch_ts, ...
    summary.json                             DemoSummary

How the world works: every search session has one *intent* (a category plus a colour, or a category
plus a brand) that matches a few dozen items. The user types several phrasings of it (word order,
morphology, typos, wrong keyboard layout; phrasings follow a Zipf law so texts repeat a lot), then
usually buys one matching item, picked by the item's Zipf popularity. Item embeddings are built from
category, brand and colour directions plus noise, so they cluster the way bert4rec's would. Dirt that
the cleaning stage must remove or survive is planted at a few per cent per kind.

Sizes: `tiny` (tests), `demo` (`make demo`), `hard` (benchmarks: a long tail, late launches, both
scripts for brands, more typos and word-order noise, mixed-intent sessions, weak popularity) and
`large`. The ceiling is computed from the ground truth in every size.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import logging
import os
import random
import shutil
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from searchrec import config
from searchrec.artifacts import events, snapshot
from searchrec.ceiling import (  # noqa: F401  (ceiling_recall: re-exported for the demo's users)
    INTENTS_FILE,
    PURCHASES_FILE,
    ceiling_recall,
    check_holdout,
    oracle_ranks,
    popularity_recall,
    popularity_series,
)
from searchrec.errors import SearchrecError

log = logging.getLogger(__name__)

# --- timeline -----------------------------------------------------------------------------------
DATA_START = "2026-08-01"  # first query / order
DATA_END = config.DEMO_DATA_END  # last day (inclusive) of queries / orders
SNAPSHOT_DATES = ("2026-08-31", "2026-09-21", "2026-10-05", "2026-10-12")
CATALOGUE_START = "2026-01-01"  # launch date of the items that exist before DATA_START
# `hard`: late launches fall in the last week before the holdout up to the last snapshot, so that
# the holdout and recommendation windows buy items that training saw rarely or never.
LATE_LAUNCH_WINDOW = ("2026-09-24", "2026-10-12")

# --- output layout ------------------------------------------------------------------------------
WAREHOUSE_FILE = "warehouse.duckdb"
EMBEDDINGS_DIR = "embeddings"
GROUND_TRUTH_DIR = "ground_truth"
ITEMS_FILE = "items.parquet"
SUMMARY_FILE = "summary.json"

SEARCH_QUERIES = events.INFER_EVENTS  # user_id, query_ts, query_text: the warehouse table's columns
ORDERS = events.ORDERS
PURCHASES = pa.schema(
    [
        ("user_id", pa.int64()),
        ("order_ts", pa.timestamp("us")),
        ("nm_id", pa.int64()),
        ("intent_id", pa.int64()),
        ("matches_intent", pa.bool_()),  # False: an impulse buy unrelated to the searched intent
        ("id_search", pa.bool_()),  # True: the item's own id (or link) was typed right before buying
    ]
)
INTENTS = pa.schema(
    [
        ("intent_id", pa.int64()),
        ("kind", pa.string()),  # "category_colour" | "category_brand"
        ("category", pa.string()),
        ("colour", pa.string()),
        ("brand", pa.string()),
        ("query", pa.string()),  # the canonical phrasing
        ("weight", pa.float64()),  # share of sessions with this intent
        ("nm_ids", pa.list_(pa.int64())),  # every catalogue item that matches, ascending
    ]
)
ITEMS = pa.schema(
    [
        ("nm_id", pa.int64()),
        ("category", pa.string()),
        ("brand", pa.string()),
        ("colour", pa.string()),
        ("launch_ts", pa.timestamp("us")),
        ("weight", pa.float64()),  # popularity weight; 0 = nobody ever buys it
        ("has_embedding", pa.bool_()),  # False: missing from every snapshot by construction
    ]
)
DIRT_KINDS = (
    "digits",
    "article",
    "link",
    "null",
    "empty",
    "whitespace",
    "emoji",
    "long",
    "sql",
    "unicode",
    "id_search",
)


@dataclass(frozen=True)
class SizeParams:
    """Knobs of one named size. Rates are per intent query (dirt) or per purchase (id_search)."""

    users: int
    items: int
    categories: int  # the first N of CATEGORIES
    colours: int  # the first N of COLOURS
    brands_per_category: int
    variants_per_intent: int  # distinct phrasings generated per intent (Zipf-weighted)
    variants_per_category: int  # broad phrasings per category ("платье", "платья женские", ...)
    dim: int = 64
    min_intent_items: int = 3
    search_only_share: float = 0.15
    sessions_per_user: float = 3.2  # mean, >= 1
    queries_per_session: float = 3.8  # mean, >= 1
    buy_probability: float = 0.8  # per session of a buyer
    second_item_probability: float = 0.12
    no_query_purchase_share: float = 0.03  # purchase sessions with no query at all
    repeat_intent_probability: float = 0.3  # a session reuses the user's favourite intent
    impulse_share: float = 0.04  # purchases of an item unrelated to the intent
    category_query_share: float = 0.12  # broad category queries inside a session
    generic_query_share: float = 0.04  # off-topic queries ("скидки", "подарок маме")
    item_zipf: float = 0.9  # within an intent
    intent_zipf: float = 0.2
    phrasing_zipf: float = 1.05
    new_item_share: float = 0.2  # launched during the data period
    dead_item_share: float = 0.05  # never bought, but embedded
    no_embedding_share: float = 0.02  # bought, but in no snapshot
    drift: float = 0.05  # per snapshot step, relative to the embedding scale
    # --- the `hard` world's knobs; their defaults leave the other sizes exactly as they were --------
    late_launch_share: float = 0.0  # items launched in LATE_LAUNCH_WINDOW: rare or absent in training
    late_launch_boost: float = 1.0  # purchase weight of a late item relative to its intent rank
    cyrillic_brand_share: float = 0.25  # brand typed in Cyrillic (where a transliteration is known)
    typo_rate: float = 0.3  # a phrasing carries a typo
    second_typo_rate: float = 0.0  # ... and a second one
    shuffle_rate: float = 0.0  # a phrasing's words typed in random order
    mixed_intent_share: float = 0.0  # sessions whose queries mix in a second, unrelated intent
    mixed_query_share: float = 0.5  # in such a session: the share of queries from the other intent
    dirt_rates: Mapping[str, float] = field(
        default_factory=lambda: {
            "digits": 0.02,
            "article": 0.01,
            "link": 0.008,
            "null": 0.01,
            "empty": 0.005,
            "whitespace": 0.005,
            "emoji": 0.005,
            "long": 0.0005,
            "sql": 0.001,
            "unicode": 0.004,
            "id_search": 0.03,
        }
    )
    min_dirt: int = 2  # at least this many rows of every kind, whatever the size


SIZES: dict[str, SizeParams] = {
    "tiny": SizeParams(
        users=300,
        items=150,
        categories=6,
        colours=5,
        brands_per_category=4,
        variants_per_intent=20,
        variants_per_category=8,
        dim=32,
        min_intent_items=2,
    ),
    "demo": SizeParams(
        users=20_000,
        items=5_000,
        categories=30,
        colours=12,
        brands_per_category=8,
        variants_per_intent=80,
        variants_per_category=30,
    ),
    # A world a better model shows in: a long tail of items with few purchases (flat within-intent
    # popularity, many items per intent), items launched in the last weeks (rare or absent in the
    # training window, bought in the holdout and recommendation windows), brands typed in Latin and
    # Cyrillic, more typos and word-order noise, sessions that mix two intents, and a catalogue in
    # which global popularity is weak. Used by the benchmarks, not by `make demo`.
    "hard": SizeParams(
        users=40_000,
        items=30_000,
        categories=30,
        colours=12,
        brands_per_category=10,
        variants_per_intent=120,
        variants_per_category=40,
        item_zipf=0.6,
        intent_zipf=0.0,
        new_item_share=0.3,
        late_launch_share=0.08,
        late_launch_boost=3.0,
        cyrillic_brand_share=0.5,
        typo_rate=0.5,
        second_typo_rate=0.25,
        shuffle_rate=0.25,
        mixed_intent_share=0.35,
    ),
    "large": SizeParams(
        users=420_000,
        items=60_000,
        categories=30,
        colours=12,
        brands_per_category=8,
        variants_per_intent=150,
        variants_per_category=60,
    ),
}


@dataclass
class DemoSummary:
    size: str
    seed: int
    users: int
    buyers: int
    search_only_users: int
    items: int
    intents: int
    purchases: int
    query_rows: int
    distinct_queries: int
    snapshots: list[str]
    dim: int
    embedded_items: int  # items in the last snapshot
    bought_without_embedding: int  # distinct bought items absent from every snapshot
    embedded_never_bought: int  # items of the last snapshot that nobody bought
    dirt: dict[str, int]
    # Recall@200 on the raw orders: holdout [DEMO_HOLDOUT_START, DEMO_TRAIN_END], popularity from
    # [DEMO_TRAIN_START, DEMO_HOLDOUT_START), candidates = items of the snapshot nearest DEMO_TRAIN_END.
    raw_ceiling_recall_at_200: float
    raw_popularity_recall_at_200: float
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DemoTables:
    """Everything generate() writes, in memory (pyarrow tables, schemas above), e.g. to load elsewhere."""

    search_queries: pa.Table  # SEARCH_QUERIES
    orders: pa.Table  # ORDERS
    embeddings: dict[str, pa.Table]  # snapshot date YYYY-MM-DD -> snapshot.EMBEDDINGS
    purchases: pa.Table  # PURCHASES: orders plus their ground truth, same rows and order
    intents: pa.Table  # INTENTS
    items: pa.Table  # ITEMS
    dirt: dict[str, int]


# --- the vocabulary ------------------------------------------------------------------------------
# Adjective endings by stem type for masculine, feminine, neuter, plural, genitive singular.
_ENDINGS = {
    "hard": ("ый", "ая", "ое", "ые", "ого"),  # красный
    "soft": ("ий", "яя", "ее", "ие", "его"),  # синий
    "velar": ("ий", "ая", "ое", "ие", "ого"),  # женский
    "stressed": ("ой", "ая", "ое", "ые", "ого"),  # голубой
}
_FORM_INDEX = {"m": 0, "f": 1, "n": 2, "pl": 3, "gen": 4}
# stem, stem type; the stems avoid ё because most people type е (ё is a perturbation below)
COLOURS = (
    ("черн", "hard"),
    ("бел", "hard"),
    ("красн", "hard"),
    ("син", "soft"),
    ("зелен", "hard"),
    ("розов", "hard"),
    ("бежев", "hard"),
    ("сер", "hard"),
    ("желт", "hard"),
    ("коричнев", "hard"),
    ("голуб", "stressed"),
    ("фиолетов", "hard"),
)
_YO = {"черн": "чёрн", "желт": "жёлт", "зелен": "зелён"}


@dataclass(frozen=True)
class Category:
    name: str  # canonical name (the intent tables show it)
    sg: str | None  # singular noun; None for pluralia tantum
    pl: str
    gender: str  # m, f, n or pl
    group: str
    tails: tuple[str, ...] = ()  # category-specific words typed after the noun


CATEGORIES = (
    Category("платье", "платье", "платья", "n", "women"),
    Category("кроссовки", None, "кроссовки", "pl", "shoes"),
    Category("куртка", "куртка", "куртки", "f", "clothes"),
    Category("джинсы", None, "джинсы", "pl", "clothes"),
    Category("сумка", "сумка", "сумки", "f", "bags", ("через плечо", "кожаная", "шоппер")),
    Category(
        "чехол для телефона", "чехол", "чехлы", "m", "tech", ("для телефона", "на айфон", "на iphone 15")
    ),
    Category("футболка", "футболка", "футболки", "f", "clothes", ("оверсайз", "хлопок")),
    Category("рюкзак", "рюкзак", "рюкзаки", "m", "bags", ("школьный", "городской")),
    Category("кеды", None, "кеды", "pl", "shoes"),
    Category("шапка", "шапка", "шапки", "f", "clothes", ("зимняя", "бини")),
    Category("свитер", "свитер", "свитеры", "m", "women", ("вязаный", "оверсайз")),
    Category("юбка", "юбка", "юбки", "f", "women", ("миди", "плиссе", "мини")),
    Category("пальто", "пальто", "пальто", "n", "women", ("шерсть", "демисезонное")),
    Category("ботинки", None, "ботинки", "pl", "shoes", ("зимние", "челси")),
    Category("наушники", None, "наушники", "pl", "tech", ("беспроводные", "накладные")),
    Category("часы", None, "часы", "pl", "tech", ("наручные", "смарт")),
    Category("худи", "худи", "худи", "n", "clothes", ("оверсайз", "с капюшоном")),
    Category("брюки", None, "брюки", "pl", "women", ("классические", "палаццо")),
    Category("шорты", None, "шорты", "pl", "clothes"),
    Category("пижама", "пижама", "пижамы", "f", "women", ("шелковая",)),
    Category("носки", None, "носки", "pl", "clothes", ("набор", "высокие")),
    Category("кружка", "кружка", "кружки", "f", "home", ("керамическая", "с надписью")),
    Category("полотенце", "полотенце", "полотенца", "n", "home", ("банное", "махровое")),
    Category("сапоги", None, "сапоги", "pl", "shoes", ("зимние", "ботфорты")),
    Category("рубашка", "рубашка", "рубашки", "f", "clothes"),
    Category("пуховик", "пуховик", "пуховики", "m", "clothes", ("зимний", "длинный")),
    Category("кошелек", "кошелек", "кошельки", "m", "bags", ("кожаный",)),
    Category("зонт", "зонт", "зонты", "m", "bags", ("автомат", "складной")),
    Category("блузка", "блузка", "блузки", "f", "women"),
    Category("толстовка", "толстовка", "толстовки", "f", "clothes"),
)
BRANDS = {
    "women": ("zara", "mango", "befree", "love republic", "lime", "sela", "concept club", "gloria jeans", "incity", "o'stin"),
    "clothes": ("nike", "adidas", "puma", "zara", "gloria jeans", "tom tailor", "demix", "befree", "columbia", "finn flare", "uniqlo", "baon"),
    "shoes": ("nike", "adidas", "puma", "reebok", "new balance", "asics", "skechers", "fila", "converse", "vans", "ecco", "timberland"),
    "bags": ("michael kors", "guess", "lacoste", "zara", "mango", "fabretti", "eleganzza", "xiaomi", "nike", "adidas"),
    "tech": ("apple", "samsung", "xiaomi", "jbl", "sony", "huawei", "honor", "baseus", "casio", "garmin", "ugreen", "marshall"),
    "home": ("ikea", "cleanelly", "arya", "luminarc", "tescoma", "hoff", "pasabahce", "home collection"),
}  # fmt: skip
_BRAND_CYRILLIC = {
    "nike": "найк", "adidas": "адидас", "puma": "пума", "zara": "зара", "reebok": "рибок",
    "new balance": "нью баланс", "asics": "асикс", "skechers": "скечерс", "fila": "фила",
    "converse": "конверс", "vans": "ванс", "ecco": "экко", "timberland": "тимберленд",
    "mango": "манго", "befree": "бифри", "love republic": "лав репаблик", "gloria jeans": "глория джинс",
    "xiaomi": "сяоми", "samsung": "самсунг", "apple": "эпл", "huawei": "хуавей", "honor": "хонор",
    "sony": "сони", "lacoste": "лакост", "guess": "гесс", "michael kors": "майкл корс",
    "columbia": "коламбия", "ikea": "икеа", "casio": "касио", "uniqlo": "юникло", "demix": "демикс",
}  # fmt: skip
_GENDERED_MODIFIERS = (("женск", "velar"), ("мужск", "velar"), ("детск", "velar"), ("летн", "soft"),
                       ("зимн", "soft"), ("спортивн", "hard"), ("стильн", "hard"), ("модн", "hard"))  # fmt: skip
_TAIL_WORDS = (
    "купить",
    "недорого",
    "оригинал",
    "2026",
    "новинка",
    "со скидкой",
    "большой размер",
    "распродажа",
)
_SIZE_WORDS = {"women": ("размер 44", "46 размер", "р 42", "s", "m", "xl"), "clothes": ("размер 50", "р 48", "l", "xxl"),
               "shoes": ("42 размер", "р 38", "размер 40", "37")}  # fmt: skip
GENERIC_QUERIES = (
    "подарок маме", "скидки", "распродажа", "новинки", "товары для дома", "подарок на новый год",
    "игрушки", "духи женские", "шампунь", "wildberries", "вб", "подарок мужчине", "косметика",
    "бесплатная доставка", "школа", "для кухни", "органайзер", "гирлянда", "постельное белье", "корм для кошек",
)  # fmt: skip
_LAYOUT = dict(zip("йцукенгшщзхъфывапролджэячсмитьбюё", "qwertyuiop[]asdfghjkl;'zxcvbnm,.`", strict=True))
_VOWEL_SWAPS = {"а": "о", "о": "а", "е": "и", "и": "е", "ы": "и", "я": "а", "ю": "у", "у": "ю"}

# --- planted dirt ---------------------------------------------------------------------------------
WB_CATALOG_URL = "https://www.wildberries.ru/catalog/"
_ARTICLE_PREFIXES = ("арт ", "арт. ", "артикул ", "Артикул: ", "арт", "артикул", "арт.")
_LINK_PREFIXES = (WB_CATALOG_URL, "https://wildberries.ru/catalog/", "www.wildberries.ru/catalog/")
_LINK_SUFFIXES = ("/detail.aspx", "/detail.aspx?targetUrl=GP", "/detail.aspx?size=1234567")
_WHITESPACE = (" ", "   ", "\t", "\n", " \u00a0 ", "\u3000", "\r\n")
_EMOJI = ("👗", "❤️", "👟👟", "🎁🎄", "😍", "🔥🔥🔥", "👜✨", "📱", "🙂")
_SQL = (
    "'; DROP TABLE orders; --",
    "SELECT * FROM search_queries",
    "1' OR '1'='1",
    "платье'); DELETE FROM orders WHERE ('1'='1",
    "%' UNION SELECT user_id, nm_id FROM orders --",
    'robert"); DROP TABLE search_queries;--',
    "\\x00\\'\\\"; --",
)
_UNICODE = (
    "пла\u200bтье красное",  # zero-width space
    "плaтье",  # Latin a
    "ПЛАТЬЕ ЧЕРНОЕ",
    "кроссо\u0301вки",  # combining acute accent
    "ｎｉｋｅ ｋｅｄｙ",  # full-width
    "\u202eьлтуфт",  # right-to-left override
    "сумка 👜 красная",
    "джинсы\ufeff",  # BOM
    "Ткань: 100% хлопок ™ ® ©",
    "crème brûlée",
    "中文 платье",
    "مرحبا",
    "𝕡𝕝𝕒𝕥𝕖",
)


# --- small helpers --------------------------------------------------------------------------------
def _epoch_s(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp())


def _ts_array(seconds: np.ndarray) -> pa.Array:
    return pa.array(seconds.astype(np.int64) * 1_000_000, type=pa.timestamp("us"))


def _zipf(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return w / w.sum()


def _unique_ids(rng: np.random.Generator, n: int, start: int, max_gap: int) -> np.ndarray:
    """n distinct ascending int64 ids (random gaps): realistic, collision-free, vectorised."""
    return start + np.cumsum(rng.integers(1, max_gap, n, dtype=np.int64))


def _grouped_cdf(indptr: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Cumulative weights `w` of each group's members, shifted by the group index (group g spans
    (g, g+1]). One searchsorted on it then draws a member of any group: vectorised categorical
    sampling with a different distribution per row.
    """
    n_groups = len(indptr) - 1
    group = np.repeat(np.arange(n_groups), np.diff(indptr))
    totals = np.add.reduceat(w, indptr[:-1]) if len(w) else np.zeros(0)
    totals = np.where(np.diff(indptr) > 0, totals, 0.0)
    csum = np.cumsum(w)
    start = np.concatenate([[0.0], csum])[indptr[:-1]]
    within = (csum - start[group]) / np.where(totals[group] > 0, totals[group], 1.0)
    cdf = group + within
    last = indptr[1:][np.diff(indptr) > 0] - 1
    cdf[last] = group[last] + 1.0  # exact upper end despite rounding
    return cdf


def _draw_grouped(
    rng: np.random.Generator, groups: np.ndarray, cdf: np.ndarray, members: np.ndarray
) -> np.ndarray:
    u = 1.0 - rng.random(len(groups))  # (0, 1]: never lands on the previous group's end
    pos = np.searchsorted(cdf, groups + u, side="left")
    return members[np.minimum(pos, len(members) - 1)]


# --- catalogue and intents ----------------------------------------------------------------------
@dataclass
class _Catalogue:
    categories: tuple[Category, ...]
    colour_names: list[str]
    brand_names: list[str]
    nm_id: np.ndarray
    cat: np.ndarray
    brand: np.ndarray  # index into brand_names
    colour: np.ndarray
    weight: np.ndarray
    launch_s: np.ndarray
    has_embedding: np.ndarray


def _colour_form(stem: str, kind: str, form: str) -> str:
    return stem + _ENDINGS[kind][_FORM_INDEX[form]]


def _make_catalogue(p: SizeParams, rng: np.random.Generator) -> _Catalogue:
    cats = CATEGORIES[: p.categories]
    colour_names = [_colour_form(s, k, "m") for s, k in COLOURS[: p.colours]]
    brand_names = sorted({b for g in BRANDS.values() for b in g})
    brand_index = {b: i for i, b in enumerate(brand_names)}
    # each category sells a rotated slice of its group's brands
    cat_brands = np.array(
        [
            [
                brand_index[BRANDS[c.group][(ci + j) % len(BRANDS[c.group])]]
                for j in range(p.brands_per_category)
            ]
            for ci, c in enumerate(cats)
        ]
    )
    n = p.items
    cat_w = rng.uniform(0.6, 1.4, len(cats))
    cat = rng.choice(len(cats), n, p=cat_w / cat_w.sum())
    brand = cat_brands[cat, rng.integers(0, p.brands_per_category, n)]
    colour_w = rng.uniform(0.5, 1.5, p.colours)
    colour = rng.choice(p.colours, n, p=colour_w / colour_w.sum())
    weight = np.ones(n)  # the expected share of purchases, filled in by _make_intents
    weight[rng.random(n) < p.dead_item_share] = 0.0
    start, end = _epoch_s(DATA_START), _epoch_s(DATA_END) + 86_399
    launch = np.where(
        rng.random(n) < p.new_item_share, rng.integers(start, end, n), _epoch_s(CATALOGUE_START)
    )
    has_embedding = rng.random(n) >= p.no_embedding_share
    if p.late_launch_share > 0:
        late = rng.random(n) < p.late_launch_share
        lo, hi = (_epoch_s(d) for d in LATE_LAUNCH_WINDOW)
        launch = np.where(late, rng.integers(lo, hi, n), launch)
    # nm_ids grow with launch time, as a marketplace's would
    order = np.argsort(launch, kind="stable")
    nm_id = np.empty(n, dtype=np.int64)
    nm_id[order] = _unique_ids(rng, n, 10_000_000, 40_000)
    return _Catalogue(
        cats, colour_names, brand_names, nm_id, cat, brand, colour, weight, launch, has_embedding
    )


@dataclass
class _Intents:
    kind: np.ndarray  # 0 = category+colour, 1 = category+brand
    cat: np.ndarray
    attr: np.ndarray  # colour or brand index
    weight: np.ndarray  # session share
    indptr: np.ndarray  # matching items: members[indptr[i]:indptr[i+1]], ascending nm_id
    members: np.ndarray
    cdf: np.ndarray


def _make_intents(c: _Catalogue, p: SizeParams, rng: np.random.Generator) -> _Intents:
    n_attr = max(len(c.brand_names), p.colours)
    kinds, cats, attrs, groups = [], [], [], []
    for kind, attr in ((0, c.colour), (1, c.brand)):
        key = c.cat.astype(np.int64) * n_attr + attr
        uniq, counts = np.unique(key, return_counts=True)
        keep = uniq[counts >= p.min_intent_items]
        kinds.append(np.full(len(keep), kind))
        cats.append(keep // n_attr)
        attrs.append(keep % n_attr)
        groups.append((kind, key, keep))
    kind = np.concatenate(kinds)
    cat, attr = np.concatenate(cats), np.concatenate(attrs)
    # CSR of matching items per intent, items ascending by nm_id within an intent
    by_nm = np.argsort(c.nm_id, kind="stable")
    member_lists, sizes = [], []
    for _kind, key, keep in groups:
        key_sorted = key[by_nm]
        idx = np.searchsorted(keep, key_sorted)
        ok = (idx < len(keep)) & (keep[np.minimum(idx, len(keep) - 1)] == key_sorted)
        order = np.argsort(idx[ok], kind="stable")
        member_lists.append(by_nm[ok][order])
        sizes.append(np.bincount(idx[ok], minlength=len(keep)))
    members = np.concatenate(member_lists)
    indptr = np.concatenate([[0], np.cumsum(np.concatenate(sizes))])
    # Within an intent, items follow a Zipf law over a random ranking of its own: each intent has a
    # head and a tail, yet no handful of items dominates the catalogue (which would make global
    # popularity a strong recommender). Dead items (weight 0) are never bought.
    size = np.diff(indptr)
    owner = np.repeat(np.arange(len(kind)), size)
    by_owner = np.lexsort((rng.random(len(members)), owner))
    rank = np.empty(len(members), dtype=np.int64)
    rank[by_owner] = np.arange(len(members)) - indptr[owner[by_owner]]
    member_w = (c.weight[members] > 0) / (rank + 1.0) ** p.item_zipf
    if p.late_launch_boost != 1.0:
        late = c.launch_s[members] >= _epoch_s(LATE_LAUNCH_WINDOW[0])
        member_w = np.where(late, member_w * p.late_launch_boost, member_w)
    totals = np.add.reduceat(member_w, indptr[:-1])
    weight = _zipf(len(kind), p.intent_zipf)[rng.permutation(len(kind))] * (totals > 0)
    weight /= weight.sum()
    # each item's expected share of (non-impulse) purchases: also what impulse buys draw from
    share = weight[owner] * member_w / np.where(totals > 0, totals, 1.0)[owner]
    c.weight = np.bincount(members, weights=share, minlength=len(c.nm_id))
    return _Intents(kind, cat, attr, weight, indptr, members, _grouped_cdf(indptr, member_w))


# --- query phrasings ------------------------------------------------------------------------------
def _typo(rnd: random.Random, s: str) -> str:
    letters = [i for i, ch in enumerate(s) if ch.isalpha()]
    if len(letters) < 3:
        return s
    i = rnd.choice(letters)
    op = rnd.random()
    if op < 0.3:
        return s[:i] + s[i + 1 :]  # dropped letter: "платя"
    if op < 0.55 and i + 1 < len(s) and s[i + 1].isalpha():
        return s[:i] + s[i + 1] + s[i] + s[i + 2 :]  # swapped letters: "палтье"
    if op < 0.75:
        return s[:i] + s[i] + s[i:]  # doubled letter
    return s[:i] + _VOWEL_SWAPS.get(s[i], s[i]) + s[i + 1 :]  # phonetic misspelling: "кросовки" / "платте"


def _perturb(rnd: random.Random, s: str, p: SizeParams) -> str:
    if rnd.random() < 0.12:
        for plain, yo in _YO.items():
            s = s.replace(plain, yo)
    if p.shuffle_rate > 0 and rnd.random() < p.shuffle_rate:
        words = s.split(" ")
        rnd.shuffle(words)  # word-order noise: "nike кроссовки белые мужские"
        s = " ".join(words)
    if rnd.random() < p.typo_rate:
        s = _typo(rnd, s)
        if p.second_typo_rate > 0 and rnd.random() < p.second_typo_rate:
            s = _typo(rnd, s)
    r = rnd.random()
    if r < 0.015:
        s = "".join(_LAYOUT.get(ch, ch) for ch in s)  # typed in the English layout: "rhfcyjt gkfnmt"
    elif r < 0.09:
        s = s[:1].upper() + s[1:]
    elif r < 0.105:
        s = s.upper()
    if rnd.random() < 0.03:
        s = rnd.choice((" ", "  ")) + s.replace(" ", "  ", 1) + rnd.choice(("", " "))
    return s


def _brand_text(rnd: random.Random, brand: str, p: SizeParams) -> str:
    r = rnd.random()
    cyr = p.cyrillic_brand_share
    if r < cyr and brand in _BRAND_CYRILLIC:
        return _BRAND_CYRILLIC[brand]
    if r < cyr + 0.1:
        return brand.title()
    if r < cyr + 0.15:
        return brand.upper()
    return brand


def _phrase(
    rnd: random.Random,
    cat: Category,
    colour: tuple[str, str] | None,
    brand: str | None,
    canonical: bool,
    p: SizeParams,
) -> str:
    """One phrasing of an intent: number, agreement, word order and extra words vary."""
    singular = cat.sg is not None and (canonical or rnd.random() < 0.6)
    noun = cat.sg if singular else cat.pl
    gender = cat.gender if singular else "pl"
    head = [noun]
    if canonical and cat.tails and cat.name != noun:
        head = [cat.name]  # "чехол для телефона"
    if colour is not None:
        form = gender
        if not canonical and rnd.random() < 0.08:
            form = rnd.choice(("m", "f", "n", "pl"))  # users ignore agreement: "платье красный"
        adj = _colour_form(*colour, form)
        if not canonical and rnd.random() < 0.08:
            head = head + [_colour_form(*colour, "gen"), "цвета"]  # "платье красного цвета"
        elif canonical or rnd.random() < 0.65:
            head = [adj] + head
        else:
            head = head + [adj]
    if brand is not None:
        b = brand if canonical else _brand_text(rnd, brand, p)
        r = 0.0 if canonical else rnd.random()
        if r < 0.05 and not canonical:
            head = [b]  # only the brand: ambiguous across categories
        elif canonical or r < 0.55:
            head = head + [b]
        else:
            head = [b] + head
    if canonical:
        return " ".join(head)
    if rnd.random() < 0.3:
        stem, kind = rnd.choice(_GENDERED_MODIFIERS)
        head = [_colour_form(stem, kind, gender)] + head
    r = rnd.random()
    if r < 0.15 and cat.tails:
        head.append(rnd.choice(cat.tails))
    elif r < 0.27 and cat.group in _SIZE_WORDS:
        head.append(rnd.choice(_SIZE_WORDS[cat.group]))
    elif r < 0.4:
        head.append(rnd.choice(_TAIL_WORDS))
    return _perturb(rnd, " ".join(head), p)


@dataclass
class _Pool:
    texts: list[str]
    intent_offset: np.ndarray  # intent i's phrasings: texts[off[i] : off[i] + variants_per_intent]
    category_offset: np.ndarray
    generic_offset: int


def _make_pool(c: _Catalogue, it: _Intents, p: SizeParams, rnd: random.Random) -> _Pool:
    texts: list[str] = []
    intent_offset = np.zeros(len(it.kind), dtype=np.int64)
    for i in tqdm(range(len(it.kind)), desc="phrasings", leave=False, disable=len(it.kind) < 2000):
        cat = c.categories[it.cat[i]]
        colour = COLOURS[it.attr[i]] if it.kind[i] == 0 else None
        brand = c.brand_names[it.attr[i]] if it.kind[i] == 1 else None
        intent_offset[i] = len(texts)
        texts.append(_phrase(rnd, cat, colour, brand, True, p))
        texts.extend(_phrase(rnd, cat, colour, brand, False, p) for _ in range(p.variants_per_intent - 1))
    category_offset = np.zeros(len(c.categories), dtype=np.int64)
    for ci, cat in enumerate(c.categories):
        category_offset[ci] = len(texts)
        texts.append(cat.name)
        texts.extend(_phrase(rnd, cat, None, None, False, p) for _ in range(p.variants_per_category - 1))
    generic_offset = len(texts)
    texts.extend(GENERIC_QUERIES)
    return _Pool(texts, intent_offset, category_offset, generic_offset)


# --- embeddings -------------------------------------------------------------------------------------
def _make_embeddings(c: _Catalogue, p: SizeParams, rng: np.random.Generator) -> dict[str, pa.Table]:
    """bert4rec-like: a category direction, then brand and colour directions, plus item noise; each
    later snapshot drifts a little and adds the items launched since."""
    d = p.dim
    scale = 1.0 / np.sqrt(d)
    cat_vec = rng.normal(0, scale, (len(c.categories), d))
    brand_vec = rng.normal(0, scale, (len(c.brand_names), d))
    colour_vec = rng.normal(0, scale, (p.colours, d))
    base = (
        1.0 * cat_vec[c.cat]
        + 0.6 * brand_vec[c.brand]
        + 0.6 * colour_vec[c.colour]
        + 0.35 * rng.normal(0, scale, (len(c.nm_id), d))
    )
    out: dict[str, pa.Table] = {}
    current = base
    order = np.argsort(c.nm_id, kind="stable")
    for j, day in enumerate(SNAPSHOT_DATES):
        if j:
            current = current + p.drift * rng.normal(0, scale, current.shape)
        keep = order[c.has_embedding[order] & (c.launch_s[order] < _epoch_s(day))]
        emb = current[keep].astype(np.float32)
        values = pa.array(emb.reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(0, len(keep) * d + 1, d, dtype=np.int32))
        out[day] = pa.table(
            {"nm_id": pa.array(c.nm_id[keep]), "embedding": pa.ListArray.from_arrays(offsets, values)},
            schema=snapshot.EMBEDDINGS,
        )
    return out


# --- users, sessions, queries, purchases ----------------------------------------------------------
def _mix_intents(
    q_text: np.ndarray,
    q_sess: np.ndarray,
    src: np.ndarray,
    variant: np.ndarray,
    it: _Intents,
    pool: _Pool,
    p: SizeParams,
    rng: np.random.Generator,
) -> np.ndarray:
    """Some sessions interleave a second, unrelated intent: a share of their intent queries are
    phrasings of it, so the last five queries before a purchase are not all about what was bought."""
    n_s = int(q_sess.max()) + 1 if len(q_sess) else 0
    other = rng.choice(len(it.kind), n_s, p=it.weight)
    mixed = (rng.random(n_s) < p.mixed_intent_share)[q_sess] & (rng.random(len(q_sess)) < p.mixed_query_share)
    intent_query = src >= p.category_query_share + p.generic_query_share
    return np.where(mixed & intent_query, pool.intent_offset[other[q_sess]] + variant, q_text)


def _sessions(it: _Intents, p: SizeParams, rng: np.random.Generator, start: int, end: int) -> dict:
    """Users and their search sessions: intent, start time, whether it ends in a purchase, query count."""
    n_users = p.users
    user_ids = rng.permutation(_unique_ids(rng, n_users, 1_000_000, 2_000))
    search_only = rng.random(n_users) < p.search_only_share
    favourite = rng.choice(len(it.kind), n_users, p=it.weight)
    n_sess = 1 + rng.poisson(p.sessions_per_user - 1, n_users)
    s_user = np.repeat(np.arange(n_users), n_sess)
    n_s = len(s_user)
    s_intent = np.where(
        rng.random(n_s) < p.repeat_intent_probability,
        favourite[s_user],
        rng.choice(len(it.kind), n_s, p=it.weight),
    )
    s_start = rng.integers(start, end - 3600, n_s)
    s_buys = ~search_only[s_user] & (rng.random(n_s) < p.buy_probability)
    n_q = 1 + rng.poisson(p.queries_per_session - 1, n_s)
    n_q[s_buys & (rng.random(n_s) < p.no_query_purchase_share)] = 0
    return {
        **{"user_ids": user_ids, "search_only": search_only, "s_user": s_user, "s_intent": s_intent},
        **{"s_start": s_start, "s_buys": s_buys, "n_q": n_q},
    }


def _session_queries(s: dict, it: _Intents, pool: _Pool, p: SizeParams, rng: np.random.Generator) -> dict:
    """One row per typed query, seconds to minutes apart within a session; each session's last query time."""
    n_q, s_start = s["n_q"], s["s_start"]
    n_s = len(n_q)
    q_sess = np.repeat(np.arange(n_s), n_q)
    gaps = rng.exponential(75.0, len(q_sess)) + 3.0
    first = np.concatenate([[0], np.cumsum(n_q)[:-1]])
    gaps[first[n_q > 0]] = 0.0
    csum = np.cumsum(gaps)
    base = np.zeros(n_s)
    base[n_q > 0] = csum[first[n_q > 0]]
    q_ts = s_start[q_sess] + (csum - base[q_sess]).astype(np.int64)
    q_intent = s["s_intent"][q_sess]
    src = rng.random(len(q_sess))
    variant = rng.choice(p.variants_per_intent, len(q_sess), p=_zipf(p.variants_per_intent, p.phrasing_zipf))
    cat_variant = rng.choice(
        p.variants_per_category, len(q_sess), p=_zipf(p.variants_per_category, p.phrasing_zipf)
    )
    generic = rng.choice(len(GENERIC_QUERIES), len(q_sess), p=_zipf(len(GENERIC_QUERIES), 1.0))
    q_text = np.where(
        src < p.category_query_share,
        pool.category_offset[it.cat[q_intent]] + cat_variant,
        np.where(
            src < p.category_query_share + p.generic_query_share,
            pool.generic_offset + generic,
            pool.intent_offset[q_intent] + variant,
        ),
    )
    if p.mixed_intent_share > 0:
        q_text = _mix_intents(q_text, q_sess, src, variant, it, pool, p, rng)
    last_ts = s_start.copy()
    has_q = n_q > 0
    last_ts[has_q] = q_ts[first[has_q] + n_q[has_q] - 1]
    return {"q_user": s["s_user"][q_sess], "q_ts": q_ts, "q_text": q_text, "last_ts": last_ts}


def _draw_items(
    c: _Catalogue, it: _Intents, o_intent: np.ndarray, o_ts: np.ndarray, impulse: np.ndarray, rng
) -> tuple[np.ndarray, np.ndarray]:
    """The bought item of each purchase (its intent's Zipf, or global weight for impulse buys), drawn
    again where the item was not launched yet; (items, still undrawn)."""
    glob_cdf = np.cumsum(c.weight) / c.weight.sum()
    nm = np.full(len(o_intent), -1, dtype=np.int64)
    todo = np.ones(len(o_intent), dtype=bool)
    for _ in range(8):  # an item can only be bought after its launch: redraw the few that are not
        idx = np.flatnonzero(todo)
        if not len(idx):
            break
        drawn = _draw_grouped(rng, o_intent[idx], it.cdf, it.members)
        glob = np.searchsorted(glob_cdf, 1.0 - rng.random(len(idx)), side="left")
        drawn = np.where(impulse[idx], np.minimum(glob, len(glob_cdf) - 1), drawn)
        ok = c.launch_s[drawn] <= o_ts[idx]
        nm[idx[ok]] = drawn[ok]
        todo[idx[ok]] = False
    return nm, todo


def _matches_intent(c: _Catalogue, it: _Intents, o_intent: np.ndarray, nm: np.ndarray) -> np.ndarray:
    """Does the bought item match the session's intent? (impulse buys mostly do not)"""
    member_key = (
        np.repeat(np.arange(len(it.kind), dtype=np.int64), np.diff(it.indptr)) * len(c.nm_id) + it.members
    )
    member_key.sort()
    key = o_intent.astype(np.int64) * len(c.nm_id) + nm
    found = np.minimum(np.searchsorted(member_key, key), len(member_key) - 1)
    return member_key[found] == key


def _purchases(s: dict, q: dict, c: _Catalogue, it: _Intents, p: SizeParams, rng, end: int) -> dict:
    """Purchases minutes to days after the session's last query; a second item now and then."""
    b_sess = np.flatnonzero(s["s_buys"])
    b_sess = np.concatenate([b_sess, b_sess[rng.random(len(b_sess)) < p.second_item_probability]])
    b_sess.sort(kind="stable")
    delay = np.clip(np.exp(rng.normal(np.log(900.0), 1.8, len(b_sess))), 20, 5 * 86_400)
    o_ts = q["last_ts"][b_sess] + delay.astype(np.int64)
    second = np.zeros(len(b_sess), dtype=bool)
    second[1:] = b_sess[1:] == b_sess[:-1]
    o_ts[second] = o_ts[np.flatnonzero(second) - 1]  # a session's items share one order timestamp
    o_intent = s["s_intent"][b_sess]
    impulse = rng.random(len(b_sess)) < p.impulse_share
    nm, todo = _draw_items(c, it, o_intent, o_ts, impulse, rng)
    keep = ~todo & (o_ts <= end)
    keep[1:] &= ~(second[1:] & (nm[1:] == nm[:-1]))  # the second item of an order differs from the first
    o_user = s["s_user"][b_sess]
    o_ts, o_user, nm, o_intent = (a[keep] for a in (o_ts, o_user, nm, o_intent))
    return {
        **{"o_user": o_user, "o_ts": o_ts, "o_item": nm, "o_intent": o_intent},
        "o_matches": _matches_intent(c, it, o_intent, nm),
    }


def _simulate(c: _Catalogue, it: _Intents, pool: _Pool, p: SizeParams, rng: np.random.Generator) -> dict:
    start, end = _epoch_s(DATA_START), _epoch_s(DATA_END) + 86_399
    s = _sessions(it, p, rng, start, end)
    q = _session_queries(s, it, pool, p, rng)
    o = _purchases(s, q, c, it, p, rng, end)
    return {
        **{"user_ids": s["user_ids"], "search_only": s["search_only"]},
        **{k: q[k] for k in ("q_user", "q_ts", "q_text")},
        **o,
        **{"start": start, "end": end},
    }


def _choice_strings(rng: np.random.Generator, options: tuple[str, ...], n: int) -> pa.Array:
    return pa.array(options, type=pa.string()).take(pa.array(rng.integers(0, len(options), n)))


def _digits(rng: np.random.Generator, n: int, lo: int, hi: int) -> pa.Array:
    """n random numbers of lo..hi digits, as strings."""
    length = rng.integers(lo, hi + 1, n)
    values = (10 ** (length - 1) + rng.random(n) * (9 * 10 ** (length - 1))).astype(np.int64)
    return pa.array(values).cast(pa.string())


def _long_texts(rng: np.random.Generator, pool: _Pool) -> tuple[str, ...]:
    """A few texts of thousands of characters: pasted descriptions, a phrase held down, random letters."""
    out = []
    for _ in range(6):
        phrase = pool.texts[int(rng.integers(0, pool.generic_offset))] + " "
        out.append(phrase * int(rng.integers(2_000, 6_000) // len(phrase) + 1))
    letters = np.array(list("абвгдежзийклмнопрстуфхцчшщыэюя  "))
    for _ in range(4):
        out.append("".join(letters[rng.integers(0, len(letters), int(rng.integers(2_000, 8_000)))]))
    out.append("Состав: 95% хлопок, 5% эластан. " * 120)
    out.append("🔥" * 3_000)
    return tuple(out)


def _id_searches(sim: dict, c: _Catalogue, p: SizeParams, rng: np.random.Generator):
    """The bought item's own id (or its link) typed right before the purchase: (users, ts, texts, flag)."""
    n_orders = len(sim["o_ts"])
    pick = rng.random(n_orders) < p.dirt_rates["id_search"]
    if pick.sum() < p.min_dirt and n_orders >= p.min_dirt:
        pick[rng.choice(n_orders, p.min_dirt, replace=False)] = True
    idx = np.flatnonzero(pick)
    nm = pa.array(c.nm_id[sim["o_item"][idx]]).cast(pa.string())
    as_link = pa.array(rng.random(len(idx)) < 0.2)
    link = pc.binary_join_element_wise(WB_CATALOG_URL, nm, "/detail.aspx", "")
    return (
        sim["o_user"][idx],
        sim["o_ts"][idx] - rng.integers(10, 600, len(idx)),
        pc.if_else(as_link, link, nm),
        pick,
    )


def _make_dirt(sim: dict, c: _Catalogue, pool: _Pool, p: SizeParams, rng: np.random.Generator):
    """Extra query rows of every dirt kind, placed inside real users' sessions (seconds to minutes
    before one of their queries), and the flag of the purchases preceded by their item's own id."""
    n_base = len(sim["q_ts"])
    users, ts, texts, counts = [], [], [], {}
    for kind in DIRT_KINDS:
        if kind == "id_search":
            continue
        n = max(p.min_dirt, round(p.dirt_rates[kind] * n_base))
        counts[kind] = n
        anchor = rng.integers(0, n_base, n)
        users.append(sim["q_user"][anchor])
        ts.append(sim["q_ts"][anchor] - rng.integers(1, 180, n))
        if kind == "digits":
            t = _digits(rng, n, 1, 12)
        elif kind == "article":
            nm = np.where(
                rng.random(n) < 0.5,
                c.nm_id[rng.integers(0, len(c.nm_id), n)],
                _digits(rng, n, 6, 9).cast(pa.int64()).to_numpy(),
            )
            t = pc.binary_join_element_wise(
                _choice_strings(rng, _ARTICLE_PREFIXES, n), pa.array(nm).cast(pa.string()), ""
            )
        elif kind == "link":
            nm = pa.array(c.nm_id[rng.integers(0, len(c.nm_id), n)]).cast(pa.string())
            t = pc.binary_join_element_wise(
                _choice_strings(rng, _LINK_PREFIXES, n), nm, _choice_strings(rng, _LINK_SUFFIXES, n), ""
            )
        elif kind == "null":
            t = pa.nulls(n, pa.string())
        elif kind == "empty":
            t = pa.array([""] * n, type=pa.string())
        elif kind == "whitespace":
            t = _choice_strings(rng, _WHITESPACE, n)
        elif kind == "emoji":
            t = _choice_strings(rng, _EMOJI, n)
        elif kind == "long":
            t = _choice_strings(rng, _long_texts(rng, pool), n)
        elif kind == "sql":
            t = _choice_strings(rng, _SQL, n)
        else:
            t = _choice_strings(rng, _UNICODE, n)
        texts.append(t)

    u, t, txt, pick = _id_searches(sim, c, p, rng)
    users.append(u)
    ts.append(t)
    texts.append(txt)
    counts["id_search"] = len(u)
    # clipped into the data period, so every planted row is kept and the counts are exact
    ts_all = np.clip(np.concatenate(ts), sim["start"], sim["end"])
    return np.concatenate(users), ts_all, pa.concat_arrays(texts), counts, pick


# --- in-memory generation -------------------------------------------------------------------------
def _size_params(size: str) -> SizeParams:
    if size not in SIZES:
        raise SearchrecError(f"unknown demo size {size!r}; expected one of {', '.join(SIZES)}")
    return SIZES[size]


def _query_table(sim: dict, pool: _Pool, d_user, d_ts, d_text) -> pa.Table:
    """search_queries: intent queries + dirt, inside the data period, ordered by time then user."""
    user_idx = np.concatenate([sim["q_user"], d_user])
    ts = np.concatenate([sim["q_ts"], d_ts])
    text = pa.concat_arrays([pa.array(pool.texts, type=pa.string()).take(pa.array(sim["q_text"])), d_text])
    inside = (ts >= sim["start"]) & (ts <= sim["end"])
    user_id = sim["user_ids"][user_idx]
    order = np.flatnonzero(inside)[np.lexsort((user_id[inside], ts[inside]))]
    return pa.table(
        {
            "user_id": pa.array(user_id[order]),
            "query_ts": _ts_array(ts[order]),
            "query_text": text.take(pa.array(order)),
        },
        schema=SEARCH_QUERIES,
    )


def _order_tables(sim: dict, cat: _Catalogue, id_search: np.ndarray) -> tuple[pa.Table, pa.Table]:
    """orders (the warehouse table) and purchases (the same rows with their ground truth)."""
    o_order = np.lexsort((sim["o_user"], sim["o_ts"]))
    o_user = sim["user_ids"][sim["o_user"][o_order]]
    o_ts = _ts_array(sim["o_ts"][o_order])
    o_nm = cat.nm_id[sim["o_item"][o_order]]
    orders = pa.table({"user_id": o_user, "order_ts": o_ts, "nm_id": o_nm}, schema=ORDERS)
    purchases = pa.table(
        {
            "user_id": o_user,
            "order_ts": o_ts,
            "nm_id": o_nm,
            "intent_id": sim["o_intent"][o_order].astype(np.int64),
            "matches_intent": sim["o_matches"][o_order],
            "id_search": id_search[o_order],
        },
        schema=PURCHASES,
    )
    return orders, purchases


def _truth_tables(cat: _Catalogue, it: _Intents, pool: _Pool, p: SizeParams) -> tuple[pa.Table, pa.Table]:
    """The ground truth's intents and items tables."""
    colour_names = np.array([_colour_form(*COLOURS[i], "m") for i in range(p.colours)], dtype=object)
    cat_names = np.array([c.name for c in cat.categories], dtype=object)
    brand_names = np.array(cat.brand_names, dtype=object)
    is_colour = it.kind == 0
    intents = pa.table(
        {
            "intent_id": np.arange(len(it.kind), dtype=np.int64),
            "kind": np.where(is_colour, "category_colour", "category_brand").tolist(),
            "category": cat_names[it.cat],
            "colour": np.where(is_colour, colour_names[np.where(is_colour, it.attr, 0)], None),
            "brand": np.where(is_colour, None, brand_names[it.attr]),
            "query": [pool.texts[o] for o in pool.intent_offset],
            "weight": it.weight,
            "nm_ids": pa.ListArray.from_arrays(
                pa.array(it.indptr.astype(np.int32)), pa.array(cat.nm_id[it.members])
            ),
        },
        schema=INTENTS,
    )
    by_nm = np.argsort(cat.nm_id, kind="stable")
    items = pa.table(
        {
            "nm_id": cat.nm_id[by_nm],
            "category": cat_names[cat.cat[by_nm]],
            "brand": brand_names[cat.brand[by_nm]],
            "colour": colour_names[cat.colour[by_nm]],
            "launch_ts": _ts_array(cat.launch_s[by_nm]),
            "weight": cat.weight[by_nm],
            "has_embedding": cat.has_embedding[by_nm],
        },
        schema=ITEMS,
    )
    return intents, items


def generate_tables(size: str = "demo", seed: int = 0) -> DemoTables:
    """The whole demo world in memory; the same (size, seed) always gives the same tables."""
    p = _size_params(size)
    if not isinstance(seed, int) or seed < 0:
        raise SearchrecError(f"seed must be a non-negative integer, got {seed!r}")
    t0 = time.perf_counter()
    rng_cat, rng_intent, rng_text, rng_emb, rng_sim, rng_dirt = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, 20260801]).spawn(6)
    )
    cat = _make_catalogue(p, rng_cat)
    it = _make_intents(cat, p, rng_intent)
    pool = _make_pool(cat, it, p, random.Random(int(rng_text.integers(0, 2**63))))
    embeddings = _make_embeddings(cat, p, rng_emb)
    sim = _simulate(cat, it, pool, p, rng_sim)
    d_user, d_ts, d_text, dirt, id_search = _make_dirt(sim, cat, pool, p, rng_dirt)
    queries = _query_table(sim, pool, d_user, d_ts, d_text)
    orders, purchases = _order_tables(sim, cat, id_search)
    intents, items = _truth_tables(cat, it, pool, p)
    log.info(
        "demo %s seed %d: %d users, %d items, %d intents, %d query rows, %d orders, %d snapshots in %.1fs",
        size, seed, p.users, p.items, len(it.kind), queries.num_rows, orders.num_rows, len(embeddings),
        time.perf_counter() - t0,
    )  # fmt: skip
    return DemoTables(queries, orders, embeddings, purchases, intents, items, dirt)


# --- recall bounds (the oracle itself lives in searchrec.ceiling, beside evaluation) --------------
def _raw_recalls(t: DemoTables, k: int = 200) -> tuple[float, float]:
    """Ceiling and popularity Recall@k on the raw orders of the demo's holdout window (a diagnostic)."""
    orders = t.orders.to_pandas()
    ts = orders["order_ts"]
    train = orders[(ts >= config.DEMO_TRAIN_START) & (ts < config.DEMO_HOLDOUT_START)]
    holdout = orders[
        (ts >= config.DEMO_HOLDOUT_START) & (ts < pd.Timestamp(config.DEMO_TRAIN_END) + pd.Timedelta(days=1))
    ]
    if len(holdout) == 0 or len(train) == 0:
        return float("nan"), float("nan")
    pop = train["nm_id"].value_counts()
    target = date.fromisoformat(config.DEMO_TRAIN_END)
    nearest = min(t.embeddings, key=lambda d: abs((date.fromisoformat(d) - target).days))
    candidates = set(t.embeddings[nearest].column("nm_id").to_pylist())
    holdout = check_holdout(holdout, k)
    ranks = oracle_ranks(
        t.purchases.to_pandas(),
        t.intents.select(["intent_id", "nm_ids"]).to_pandas(),
        holdout,
        popularity_series(pop),
        candidates,
    )
    return float(((ranks >= 0) & (ranks < k)).mean()), popularity_recall(holdout, pop, k, candidates)


# --- writing ---------------------------------------------------------------------------------------
def write_duckdb(path: Path, search_queries: pa.Table, orders: pa.Table) -> None:
    """Create the warehouse tables with sql/ddl.sql in a new DuckDB file and load the rows."""
    import duckdb

    ddl = (importlib.resources.files("searchrec") / "sql" / "ddl.sql").read_text(encoding="utf-8")
    con = duckdb.connect(str(path))
    try:
        con.execute(ddl)
        for name, table in (("search_queries", search_queries), ("orders", orders)):
            con.register("_incoming", table)
            con.execute(f"INSERT INTO {name} SELECT * FROM _incoming")
            con.unregister("_incoming")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def query_texts(out_dir: Path) -> list[str]:
    """Distinct non-empty query texts of a generated warehouse (the stand-in encoder's vocabulary)."""
    import duckdb

    path = Path(out_dir) / WAREHOUSE_FILE
    if not path.is_file():
        raise SearchrecError(f"no demo warehouse at {path}; generate the demo data first")
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT DISTINCT query_text FROM search_queries"
            " WHERE query_text IS NOT NULL AND trim(query_text) <> '' ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def _prepare_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SearchrecError(f"demo output {out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise SearchrecError(
            f"demo output {out_dir} exists and is not empty; pass overwrite=True to replace it"
        )


def generate(out_dir: Path, *, size: str = "demo", seed: int = 0, overwrite: bool = False) -> DemoSummary:
    """Write the demo warehouse, embeddings snapshots and ground truth to `out_dir` (atomically)."""
    out_dir = Path(out_dir)
    _size_params(size)
    _prepare_target(out_dir, overwrite)
    t0 = time.perf_counter()
    tables = generate_tables(size, seed)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write_duckdb(tmp / WAREHOUSE_FILE, tables.search_queries, tables.orders)
        for day, table in tables.embeddings.items():
            folder = tmp / EMBEDDINGS_DIR / f"dt={day}"
            folder.mkdir(parents=True)
            pq.write_table(table, folder / "part-0.parquet")
        gt = tmp / GROUND_TRUTH_DIR
        gt.mkdir()
        pq.write_table(tables.purchases, gt / PURCHASES_FILE)
        pq.write_table(tables.intents, gt / INTENTS_FILE)
        pq.write_table(tables.items, gt / ITEMS_FILE)
        summary = _summarise(tables, size, seed)
        summary.seconds = round(time.perf_counter() - t0, 2)
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary.as_dict(), indent=2, ensure_ascii=False) + "\n")
        _prepare_target(out_dir, overwrite)  # still true after the minutes spent generating?
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size_mb = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file()) / 1e6
    log.info(
        "wrote demo data to %s (%.1f MB): %d query rows (%d distinct), %d orders, snapshots %s, %.1fs",
        out_dir, size_mb, summary.query_rows, summary.distinct_queries, summary.purchases,
        ", ".join(summary.snapshots), summary.seconds,
    )  # fmt: skip
    return summary


def _summarise(t: DemoTables, size: str, seed: int) -> DemoSummary:
    users_q = pc.unique(t.search_queries.column("user_id"))
    buyers = pc.unique(t.orders.column("user_id"))
    bought = pc.unique(t.orders.column("nm_id"))
    embedded_any = pc.unique(
        pa.concat_arrays([tb.column("nm_id").combine_chunks() for tb in t.embeddings.values()])
    )
    last = t.embeddings[max(t.embeddings)].column("nm_id")
    ceiling, popularity = _raw_recalls(t)
    return DemoSummary(
        size=size,
        seed=seed,
        users=len(pc.unique(pa.concat_arrays([users_q, buyers]))),
        buyers=len(buyers),
        search_only_users=int(pc.sum(pc.invert(pc.is_in(users_q, value_set=buyers))).as_py() or 0),
        items=t.items.num_rows,
        intents=t.intents.num_rows,
        purchases=t.orders.num_rows,
        query_rows=t.search_queries.num_rows,
        distinct_queries=len(pc.unique(t.search_queries.column("query_text"))),
        snapshots=sorted(t.embeddings),
        dim=len(t.embeddings[max(t.embeddings)].column("embedding")[0]),
        embedded_items=len(last),
        bought_without_embedding=int(
            pc.sum(pc.invert(pc.is_in(bought, value_set=embedded_any))).as_py() or 0
        ),
        embedded_never_bought=int(pc.sum(pc.invert(pc.is_in(last, value_set=bought))).as_py() or 0),
        dirt=dict(t.dirt),
        raw_ceiling_recall_at_200=round(ceiling, 4),
        raw_popularity_recall_at_200=round(popularity, 4),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write the seeded demo warehouse, embeddings and ground truth."
    )
    parser.add_argument("--out", type=Path, default=Path(config.DEMO_DIR))
    parser.add_argument("--size", default="demo", choices=sorted(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        summary = generate(args.out, size=args.size, seed=args.seed, overwrite=args.overwrite)
    except SearchrecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary.as_dict(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
