"""Wording shared by messages."""
from __future__ import annotations


def a(word: str) -> str:
    """``word`` with its indefinite article: "an int", "a list", "an Example" (by its first letter, which fits
    the family titles and type names messages use)."""
    return f"{'an' if word[:1].lower() in 'aeiou' and word else 'a'} {word}"
