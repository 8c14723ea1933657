"""Query text rules (DESIGN.md section 1, training step 2): normalisation and the query filters.

Every function takes a whole pyarrow array of texts and works column-wise (pyarrow.compute, RE2
regular expressions); none loops over rows in Python. Only pyarrow is imported: this module runs in
the CPU clean image, which must never import torch, transformers or faiss.

Which rule sees which text:

* links and item-page links are recognised on the *raw* text (normalisation turns the dots and
  slashes of a URL into spaces);
* digit-only queries, article numbers and empty queries are recognised on the *normalised* text,
  so that "  12 345 ", "арт. 123456" and "Артикул: 123456" look alike.

NULL stays NULL through :func:`normalize_queries`; the predicates return ``False`` for NULL (a NULL
query is caught by :func:`is_empty_query`, which returns ``True`` for it).
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc

from searchrec import config

logger = logging.getLogger(__name__)

MAX_QUERY_LENGTH = config.MAX_QUERY_LENGTH
# Raw text is cut to this many characters before the regular expressions run, so that a
# 10,000-character paste costs no more than a long query. Normalisation only shortens text by
# removing symbols and collapsing runs of spaces, so the final cap still sees the full prefix.
_PRECAP_FACTOR = 4

# Symbols that NFKC would otherwise turn into letters or digits ("™" -> "tm", "℡" -> "tel"), emoji,
# modifiers (skin tones), format characters (zero-width joiners), private use. Removed before NFKC.
_SYMBOLS = r"[\p{So}\p{Sk}\p{Cf}\p{Co}]"
# After NFKC: the same again plus combining marks (emoji variation selectors, keycaps, stress
# accents; Cyrillic й and ё are precomposed by NFKC and survive).
_SYMBOLS_AND_MARKS = r"[\p{So}\p{Sk}\p{Cf}\p{Co}\p{M}]+"
# Punctuation, math and currency signs, separators and control characters become one space.
_SEPARATORS = r"[\p{P}\p{Sm}\p{Sc}\p{Z}\p{Cc}\s]+"

_DIGITS = r"^[\p{N} ]+$"
_ARTICLE_WORD = r"(?:артикул|арт|article|art|sku|код товара|код)(?: ?(?:no|nr|n))?"
_ARTICLE = rf"^{_ARTICLE_WORD} ?[0-9]+(?: [0-9]+)*$|^[0-9]{{6,12}}$"
_ARTICLE_ID = rf"^{_ARTICLE_WORD} ?(?P<id>[0-9]{{1,18}})$"
_DIGITS_ID = r"^(?P<id>[0-9]{1,18})$"

_TLDS = "ru|рф|su|com|net|org|info|biz|by|kz|uz|ua|kg|am|io|me|shop|store|online|xyz"
# A scheme, "www.", or a host name ending in a known top-level domain as a whole word
# ("wildberries.ru", "ozon.ru/product/...", "вб.рф"; not "1.5" or "size.xl").
_LINK = (
    r"(?:[a-z][a-z0-9+.-]*://|(?:^|[^\p{L}\p{N}_])www\.|"
    rf"(?:^|[^\p{{L}}\p{{N}}_.-])(?:[\p{{L}}\p{{N}}-]+\.)+(?:{_TLDS})(?:$|[^\p{{L}}\p{{N}}_-]))"
)
# An item page: https://www.wildberries.ru/catalog/123456/detail.aspx, wb.ru/catalog/123456
_ITEM_LINK_ID = r"/catalog/(?P<id>[0-9]{1,18})(?:[/?#]|$)"

Texts = pa.Array | pa.ChunkedArray


def _as_array(texts: Texts) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not pa.types.is_string(texts.type) and not pa.types.is_large_string(texts.type):
        texts = texts.cast(pa.string())
    return texts


def repair_utf8(texts: Texts) -> pa.Array:
    """Return the texts with every invalid UTF-8 sequence replaced by U+FFFD.

    Parquet files written by other tools can hold byte strings that are not UTF-8 (lone
    surrogates, Latin-1); pyarrow's Unicode kernels refuse them. Valid input is returned as is.
    """
    texts = _as_array(texts)
    try:
        texts.validate(full=True)
        return texts
    except pa.ArrowInvalid:
        pass
    as_bytes = texts.cast(pa.binary())
    decoded = as_bytes.to_pandas().str.decode("utf-8", errors="replace")
    repaired = pa.array(decoded, type=pa.string(), from_pandas=True)
    changed = pc.sum(pc.not_equal(as_bytes, repaired.cast(pa.binary()))).as_py()
    logger.warning("replaced invalid UTF-8 sequences in %s of %d texts", changed, len(texts))
    return repaired


def normalize_queries(texts: Texts, *, max_length: int = MAX_QUERY_LENGTH) -> pa.Array:
    """Normalise query texts the way the encoder sees them.

    NFKC, lower case, ``ё`` -> ``е``, emoji and other symbols removed, punctuation, separators and
    control characters to one space, whitespace collapsed and stripped, at most ``max_length``
    characters. NULL stays NULL; a text made only of symbols becomes ``""``.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    texts = repair_utf8(texts)
    out = pc.utf8_slice_codeunits(texts, 0, max_length * _PRECAP_FACTOR)
    out = pc.replace_substring_regex(out, _SYMBOLS, "")
    out = pc.utf8_normalize(out, "NFKC")
    out = pc.utf8_lower(out)
    out = pc.replace_substring(out, "ё", "е")
    out = pc.replace_substring_regex(out, _SYMBOLS_AND_MARKS, "")
    out = pc.replace_substring_regex(out, _SEPARATORS, " ")
    out = pc.utf8_trim_whitespace(out)
    out = pc.utf8_slice_codeunits(out, 0, max_length)
    return pc.utf8_rtrim_whitespace(out)


def _lower_raw(texts: Texts, max_length: int) -> pa.Array:
    texts = repair_utf8(texts)
    return pc.utf8_lower(pc.utf8_slice_codeunits(texts, 0, max_length * _PRECAP_FACTOR))


def is_link_query(raw: Texts, *, max_length: int = MAX_QUERY_LENGTH) -> pa.BooleanArray:
    """True where the *raw* text holds a link: ``http(s)://...``, ``www....`` or a domain name."""
    return pc.fill_null(pc.match_substring_regex(_lower_raw(raw, max_length), _LINK), False)


def is_digit_query(normalized: Texts) -> pa.BooleanArray:
    """True where the normalised text is only digits (and spaces): ``"123"``, ``"12 345"``."""
    return pc.fill_null(pc.match_substring_regex(_as_array(normalized), _DIGITS), False)


def is_article_query(normalized: Texts) -> pa.BooleanArray:
    """True where the normalised text is an article number.

    ``"арт 12345678"``, ``"артикул 123456"`` (from ``"артикул: 123456"``), ``"art 1234567"`` (from
    ``"art. 1234567"``), ``"sku 123"``, or a bare number of 6 to 12 digits.
    """
    return pc.fill_null(pc.match_substring_regex(_as_array(normalized), _ARTICLE), False)


def is_empty_query(normalized: Texts) -> pa.BooleanArray:
    """True where the normalised text is NULL or empty."""
    normalized = _as_array(normalized)
    return pc.fill_null(pc.equal(pc.utf8_length(normalized), 0), True)


def _extract_id(texts: pa.Array, pattern: str) -> pa.Int64Array:
    return pc.struct_field(pc.extract_regex(texts, pattern), [0]).cast(pa.int64())


def link_item_id(raw: Texts, *, max_length: int = MAX_QUERY_LENGTH) -> pa.Int64Array:
    """The ``nm_id`` of an item-page link (``.../catalog/<nm_id>/...``) in the raw text, else NULL."""
    return _extract_id(_lower_raw(raw, max_length), _ITEM_LINK_ID)


def query_item_id(raw: Texts, normalized: Texts, *, max_length: int = MAX_QUERY_LENGTH) -> pa.Int64Array:
    """The ``nm_id`` a query names, else NULL.

    An item-page link names its item; an article query (``"арт 123456"``) its number; a digit-only
    query the number its digits spell with the spaces removed (``"12 345 678"`` -> 12345678).
    A purchase of that very ``nm_id`` after such a query is an id search.
    """
    normalized = _as_array(normalized)
    from_link = link_item_id(raw, max_length=max_length)
    from_article = _extract_id(normalized, _ARTICLE_ID)
    from_digits = _extract_id(pc.replace_substring(normalized, " ", ""), _DIGITS_ID)
    return pc.coalesce(from_link, from_article, from_digits)


QUERY_RULES = ("link", "digit", "article", "empty")


def analyse_queries(raw: Texts, *, max_length: int = MAX_QUERY_LENGTH) -> pa.Table:
    """All text rules for a column of raw query texts, one row per input text.

    Columns: ``text`` (normalised), ``is_link``, ``is_digit``, ``is_article``, ``is_empty``,
    ``item_id``. Run it on the distinct texts (queries repeat heavily) and map back by index.
    """
    raw = repair_utf8(raw)
    normalized = normalize_queries(raw, max_length=max_length)
    return pa.table(
        {
            "text": normalized,
            "is_link": is_link_query(raw, max_length=max_length),
            "is_digit": is_digit_query(normalized),
            "is_article": is_article_query(normalized),
            "is_empty": is_empty_query(normalized),
            "item_id": query_item_id(raw, normalized, max_length=max_length),
        }
    )
