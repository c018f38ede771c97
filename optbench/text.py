"""User text (labels, descriptions, commands, names) made safe for the files the report
writes: Markdown that shows it as text, CSV cells a spreadsheet does not run, and file
names the file system accepts."""
from __future__ import annotations

import hashlib
import re

# Markdown syntax inside a line: code, emphasis, table cell breaks, an image's '!' and
# the ']' that closes a link or image text ("[proxy_cnn]" alone stays as it reads); an
# underscore only at a word's edge.
_MD_SPECIAL = re.compile(r"([\\`*|]|!(?=\[)|\](?=[(\[])|(?<!\w)_|_(?!\w))")
# ... and at the start of a line: headings, quotes, lists, setext underlines, link
# reference definitions.
_MD_BLOCK_START = re.compile(r"^(\s*)([-+=>#\[])")


def md_text(text, in_table: bool = True) -> str:
    """`text` as literal Markdown inline text: no image, link, emphasis or (in a table)
    cell break, and on one line (a newline would end a table row). Outside tables a
    pipe is plain text, and an escaped one would show its backslash."""
    one_line = " ".join(str(text).split())
    escaped = _MD_SPECIAL.sub(lambda m: m[0] if m[0] == "|" and not in_table else "\\" + m[0], one_line)
    return _MD_BLOCK_START.sub(r"\1\\\2", escaped)


def md_code(text) -> str:
    """`text` as a Markdown code span: fenced by more backticks than it holds in a row,
    so a backtick in it cannot close the span early."""
    one_line = " ".join(str(text).split())
    fence = "`" * (max(map(len, re.findall(r"`+", one_line)), default=0) + 1)
    pad = " " if one_line.startswith("`") or one_line.endswith("`") else ""
    return f"{fence}{pad}{one_line}{pad}{fence}"


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """A string value with a leading quote when a spreadsheet would run it as a formula;
    numbers and other values unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


MAX_SLUG = 80   # far below the 255-byte file-name limit, with room for a prefix and hash


def file_slug(name: str) -> str:
    """A file-name part for `name`: each character but an ASCII letter or digit as '_',
    at most MAX_SLUG characters; a cut or empty one ends in a hash of the whole name, so
    two long names that share a beginning stay apart."""
    slug = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in name).strip("_")
    if slug and len(slug) <= MAX_SLUG:
        return slug
    return f"{slug[:MAX_SLUG].rstrip('_')}_{_digest(name, 8)}".lstrip("_")


def unique_slugs(names) -> dict[str, str]:
    """A distinct file_slug per distinct name, in order: a name whose slug an earlier
    name took ("a b" and "a_b") gets a hash of itself appended."""
    out: dict[str, str] = {}
    for name in names:
        if name not in out:
            slug = file_slug(name)
            out[name] = slug if slug not in out.values() else f"{slug}_{_digest(name, 6)}"
    return out


def _digest(name: str, n: int) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:n]
