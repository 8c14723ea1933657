"""Query text rules (searchrec.text): each rule on hand-picked texts, asserting exact results."""

from __future__ import annotations

import pyarrow as pa
import pytest

from searchrec import text


def arr(values: list[str | None]) -> pa.Array:
    return pa.array(values, pa.string())


def invalid_utf8(chunks: list[bytes]) -> pa.Array:
    """A string array holding bytes that are not UTF-8 (as a foreign Parquet writer may produce)."""
    offsets = [0]
    for chunk in chunks:
        offsets.append(offsets[-1] + len(chunk))
    offsets_buffer = pa.array(offsets, pa.int32()).buffers()[1]
    return pa.Array.from_buffers(
        pa.string(), len(chunks), [None, offsets_buffer, pa.py_buffer(b"".join(chunks))]
    )


# --- normalisation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Кроссовки NIKE", "кроссовки nike"),
        ("Ёлка ёЖ", "елка еж"),
        ("платье, красное!!! (новое)", "платье красное новое"),
        ("  много \t пробелов\n\nи строк  ", "много пробелов и строк"),
        ("куртка 😀👍🏽 зимняя", "куртка зимняя"),
        ("Nike™ Air®", "nike air"),
        ("ｆｕｌｌ ｗｉｄｔｈ", "full width"),
        ("и\u0306од е\u0308ж", "йод еж"),  # decomposed й and ё: NFKC composes, ё -> е
        ("за\u0301мок", "замок"),  # stress accent removed
        ("c++ 100$ 5₽ a=b", "c 100 5 a b"),
        ("snake_case-word/slash", "snake case word slash"),
        ("zero\u200bwidth", "zerowidth"),
        ("'; DROP TABLE orders; --", "drop table orders"),
        ("中文 العربية", "中文 العربية"),
    ],
)
def test_normalize_queries(raw: str, expected: str) -> None:
    assert text.normalize_queries(arr([raw])).to_pylist() == [expected]


def test_normalize_keeps_null_and_empties_symbol_only_text() -> None:
    out = text.normalize_queries(arr([None, "", "   ", "😀🎉", "!!!", "\u200d\ufe0f"]))
    assert out.to_pylist() == [None, "", "", "", "", ""]


def test_normalize_caps_length_without_trailing_space() -> None:
    out = text.normalize_queries(arr(["я" * 10_000, "abc " * 100]), max_length=256).to_pylist()
    assert out[0] == "я" * 256
    assert out[1] == ("abc " * 64).rstrip()  # the cut at 256 lands on a space, which is stripped
    assert text.normalize_queries(arr(["abcdef"]), max_length=3).to_pylist() == ["abc"]


def test_normalize_accepts_chunked_arrays() -> None:
    chunked = pa.chunked_array([arr(["A"]), arr([None, "Б"])])
    assert text.normalize_queries(chunked).to_pylist() == ["a", None, "б"]


def test_invalid_utf8_is_repaired_not_fatal() -> None:
    bad = invalid_utf8([b"\xff\xfe", b"ok \xed\xa0\x80surrogate", "ёж".encode()])
    assert text.repair_utf8(bad).to_pylist() == ["\ufffd\ufffd", "ok \ufffd\ufffd\ufffdsurrogate", "ёж"]
    assert text.normalize_queries(bad).to_pylist() == ["", "ok surrogate", "еж"]
    analysis = text.analyse_queries(bad)
    assert analysis["is_empty"].to_pylist() == [True, False, False]


# --- predicates ---------------------------------------------------------------------------------------

DIGITS = ["123", "12 345", "0", "12345678901234567890"]
NOT_DIGITS = ["iphone 13", "арт 123", "", None, "1 5 л"]


def test_is_digit_query() -> None:
    normalized = text.normalize_queries(arr([*DIGITS, "  42!", *NOT_DIGITS]))
    assert text.is_digit_query(normalized).to_pylist() == [True] * 5 + [False] * 5


ARTICLES = [
    "арт 12345678",
    "артикул: 123456",
    "Art. 1234567",
    "АРТ.123",
    "sku 42",
    "article no 123456",
    "123456",
    "123456789012",
]
NOT_ARTICLES = ["12345", "1234567890123", "артикулы", "арт деко", "кроссовки 12345678", "", None]


def test_is_article_query() -> None:
    normalized = text.normalize_queries(arr([*ARTICLES, *NOT_ARTICLES]))
    assert text.is_article_query(normalized).to_pylist() == [True] * len(ARTICLES) + [False] * len(
        NOT_ARTICLES
    )


LINKS = [
    "https://www.wildberries.ru/catalog/123456/detail.aspx",
    "http://example.org",
    "www.ozon.ru",
    "смотри wildberries.ru",
    "ozon.ru/product/123",
    "вб.рф",
    "почта a@mail.ru",
    "HTTPS://WB.RU",
]
NOT_LINKS = ["размер 1.5", "nike air", "e-mail", "www", "ru", "платье.", "iphone13.pro max", "", None]


def test_is_link_query_on_raw_text() -> None:
    assert text.is_link_query(arr([*LINKS, *NOT_LINKS])).to_pylist() == [True] * len(LINKS) + [False] * len(
        NOT_LINKS
    )


def test_is_empty_query() -> None:
    normalized = text.normalize_queries(arr([None, "", " \t", "🔥", "a", "0"]))
    assert text.is_empty_query(normalized).to_pylist() == [True, True, True, True, False, False]


# --- ids named by a query -------------------------------------------------------------------------------


def test_link_item_id() -> None:
    raw = arr(
        [
            "https://www.wildberries.ru/catalog/123456/detail.aspx",
            "wb.ru/catalog/777",
            "https://www.wildberries.ru/catalog/98765432/detail.aspx?targetUrl=GP",
            "https://www.wildberries.ru/catalog/elektronika",
            "catalog 123",
            None,
        ]
    )
    assert text.link_item_id(raw).to_pylist() == [123456, 777, 98765432, None, None, None]


def test_query_item_id() -> None:
    raw = arr(
        [
            "123456",
            " 12 345 678 ",
            "арт 12345678",
            "Артикул: 555",
            "https://www.wildberries.ru/catalog/42/detail.aspx",
            "кроссовки 123456",
            "арт 123 456",
            "12345678901234567890",  # too long for an nm_id
            "",
            None,
        ]
    )
    ids = text.query_item_id(raw, text.normalize_queries(raw)).to_pylist()
    assert ids == [123456, 12345678, 12345678, 555, 42, None, None, None, None, None]


def test_analyse_queries_one_row_per_text() -> None:
    raw = arr(["Платье!", "арт 123456", "www.wb.ru", "77", None])
    table = text.analyse_queries(raw)
    assert table.column_names == ["text", "is_link", "is_digit", "is_article", "is_empty", "item_id"]
    assert table.to_pylist() == [
        {
            "text": "платье",
            "is_link": False,
            "is_digit": False,
            "is_article": False,
            "is_empty": False,
            "item_id": None,
        },
        {
            "text": "арт 123456",
            "is_link": False,
            "is_digit": False,
            "is_article": True,
            "is_empty": False,
            "item_id": 123456,
        },
        {
            "text": "www wb ru",
            "is_link": True,
            "is_digit": False,
            "is_article": False,
            "is_empty": False,
            "item_id": None,
        },
        {
            "text": "77",
            "is_link": False,
            "is_digit": True,
            "is_article": False,
            "is_empty": False,
            "item_id": 77,
        },
        {
            "text": None,
            "is_link": False,
            "is_digit": False,
            "is_article": False,
            "is_empty": True,
            "item_id": None,
        },
    ]
