"""One exception type for bad input: the CLI and the components turn it into one clear line."""

from __future__ import annotations


class SearchrecError(Exception):
    """Bad input or an unusable environment; the message is the one line a user sees."""
