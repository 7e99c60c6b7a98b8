"""Console output shared by the commands: error lines, printable paths, JSON lines."""

from __future__ import annotations

import sys


def error(msg: str) -> None:
    print(f"keychords: error: {msg}", file=sys.stderr)


def printable(text: str) -> str:
    """``text`` as stdout can encode it. A file name's bytes that are not
    valid UTF-8 (held as surrogate escapes) become ``\\udcXX`` escapes
    instead of stopping the run. (stderr does this by itself.)"""
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(enc)
        return text
    except UnicodeEncodeError:
        return text.encode(enc, "backslashreplace").decode(enc)


def json_line(obj) -> str:
    """One line of JSON; ASCII with escapes where stdout cannot take it as is
    (a non-UTF-8 file name: ``json.loads`` then ``os.fsencode`` give back the
    exact bytes of the name)."""
    import json
    text = json.dumps(obj, ensure_ascii=False)
    return text if printable(text) is text else json.dumps(obj)


def scan_noting(paths: list[str]) -> list[str]:
    """:func:`tagger.scan.scan`, with a note on stderr for each path left out."""
    from .scan import Skipped, scan
    skipped: list[Skipped] = []
    found = scan(paths, skipped)
    for s in skipped:
        print(f"keychords: note: {s.path}: skipped ({s.reason})", file=sys.stderr)
    return found
