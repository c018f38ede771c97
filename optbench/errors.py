"""One-line text of an exception, for the one-line errors optbench prints, and the
errors that modules in every layer raise or let through. Imports nothing heavy: the
plug-in registry uses it before torch is imported."""
from __future__ import annotations


class DomainError(ValueError):
    """A domain whose data or declaration cannot work; the message says which field."""


class CheckpointError(RuntimeError):
    """A model file or manifest that cannot be used (missing, wrong sha256, pickle-based)."""


def _text(e: BaseException, limit: int) -> str:
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    return text if len(text) <= limit else text[:limit] + "..."


def message_line(e: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's text, or its type's name if it has none."""
    return _text(e, limit) or type(e).__name__


def first_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its type and the first line of its text."""
    text = _text(e, limit)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
