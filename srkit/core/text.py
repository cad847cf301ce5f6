"""Wording shared by messages, and the generated blocks of the docs."""
from __future__ import annotations


def a(word: str) -> str:
    """``word`` with its indefinite article: "an int", "a list", "an Example" (by its first letter, which fits
    the family titles and type names messages use)."""
    return f"{'an' if word[:1].lower() in 'aeiou' and word else 'a'} {word}"


def replace_block(page: str, name: str, body: str) -> str:
    """``page`` with the text between its ``<!-- name: begin -->`` and ``<!-- name: end -->`` lines replaced by
    ``body``: a script's generated figures inside a hand-written page. ValueError if the markers are missing."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    i, j = page.find(begin), page.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no {begin} ... {end} block in the page")
    return page[:i + len(begin)] + "\n" + body.strip("\n") + "\n" + page[j:]


def block(page: str, name: str) -> str:
    """The text of the page's ``name`` block (``replace_block``), without the marker lines."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    i, j = page.find(begin), page.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no {begin} ... {end} block in the page")
    return page[i + len(begin):j].strip("\n")
