"""The file to import, opened, and how to read it as text.

A path or stdin (spooled to a temporary file when it cannot rewind, as from a pipe); its
encoding: UTF-8 with or without a byte-order mark, UTF-16 by its byte-order mark, else
Windows-1252 as Excel writes "CSV" on Windows, the five bytes it leaves undefined read as
Latin-1; its format, by extension or first character; and for CSV, its separator.
"""

from __future__ import annotations

import codecs
import functools
import io
import itertools
import os
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from velory_cli.errors import InputUnreadable, UsageError

FORMAT_CSV = "csv"
FORMAT_JSON = "json"
FORMAT_JSONL = "jsonl"
FORMAT_WORKBOOK = "workbook"
# Snipe-IT's API answer, {"total", "rows": [assets]}: its rejects are JSON Lines of the assets.
FORMAT_SNIPE_IT = "snipe-it"

_EXTENSION_FORMATS = {
    ".csv": FORMAT_CSV,
    ".tsv": FORMAT_CSV,
    ".txt": FORMAT_CSV,
    ".json": FORMAT_JSON,
    ".jsonl": FORMAT_JSONL,
    ".ndjson": FORMAT_JSONL,
}

# No line of an inventory is longer than this (1 MiB of text): a longer one rejects its row,
# and is read through in pieces, never held. Nor is any line longer than MAX_RECORD_CHARS
# (64 MiB): one that is refuses the file.
MAX_LINE_CHARS = 1024 * 1024
MAX_RECORD_CHARS = 64 * 1024 * 1024
# How much one read of a line asks for: a line of MAX_LINE_CHARS with its line end ("\r\n").
_LINE_READ = MAX_LINE_CHARS + 2

_SEP_HINT = re.compile(r"sep=([,;\t|])", re.IGNORECASE)
# Windows-1252 leaves five bytes undefined; those are read as Latin-1 (the C1 controls).
_WINDOWS_1252_UNDEFINED = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")
_FALLBACK_ERRORS = "velory-latin-1-fallback"
# Python's codec names, as admins know the encodings.
_LABELS = {"cp1252": "windows-1252", "iso8859-1": "latin-1", "utf-8-sig": "utf-8"}


# ---- opening the file ----------------------------------------------------------------------


@dataclass
class Source:
    """The file to import, open for reading bytes from the start, and how to call it."""

    name: str
    stream: BinaryIO
    size: int | None
    suffix: str


@contextmanager
def open_source(path: str, stdin: BinaryIO | None = None) -> Iterator[Source]:
    """The file at ``path``, or stdin for ``-``; either is spooled to a temporary file when it
    cannot seek (a pipe, ``/dev/stdin``, a named pipe, ``<(command)``). A file that is missing
    or unreadable is ``InputUnreadable``."""
    if path == "-":
        if stdin is None:
            raise InputUnreadable("no standard input to read")
        with _seekable(stdin, "standard input") as stream:
            yield Source(name="stdin", stream=stream, size=_size(stream), suffix="")
        return
    target = Path(path)
    if target.is_dir():
        raise InputUnreadable(f"{path} is a folder, not a file")
    try:
        handle = target.open("rb")
    except FileNotFoundError:
        raise InputUnreadable(f"{path}: no such file") from None
    except OSError as exc:
        raise InputUnreadable(f"cannot read {path}: {exc.strerror}") from None
    with handle, _seekable(handle, path) as stream:
        yield Source(
            name=_printable(path), stream=stream, size=_size(stream), suffix=target.suffix.lower()
        )


def _printable(path: str) -> str:
    """A file name as it can be printed: bytes that are not UTF-8 shown as \ufffd."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


@contextmanager
def _seekable(stream: BinaryIO, what: str) -> Iterator[BinaryIO]:
    try:
        seekable = stream.seekable()
    except (OSError, ValueError):
        seekable = False
    if seekable:
        yield stream
        return
    # Reading the input twice (once to tell its encoding) needs a file that can rewind.
    with tempfile.TemporaryFile(prefix="velory-import-") as spool:
        try:
            shutil.copyfileobj(stream, spool, 1024 * 1024)
        except OSError as exc:
            raise InputUnreadable(f"cannot read {_printable(what)}: {exc.strerror}") from None
        spool.seek(0)
        yield spool


def _size(stream: BinaryIO) -> int | None:
    try:
        return os.fstat(stream.fileno()).st_size
    except (OSError, ValueError, io.UnsupportedOperation):
        try:
            here = stream.tell()
            end = stream.seek(0, io.SEEK_END)
            stream.seek(here)
            return end
        except (OSError, ValueError):
            return None


# ---- encodings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoding:
    """How to read a file's bytes as text, and what to tell the admin about it."""

    codec: str
    errors: str
    label: str
    warning: str | None = None
    # UTF-8 taken on trust, without reading the file first: a byte that is not UTF-8 shows
    # while the rows are read, and the import starts again with the encoding it finds.
    tentative: bool = False


def _latin_1_fallback(exc: UnicodeError) -> tuple[str, int]:
    if isinstance(exc, UnicodeDecodeError):
        return exc.object[exc.start : exc.end].decode("latin-1"), exc.end
    raise exc


def _register_fallback() -> None:
    try:
        codecs.lookup_error(_FALLBACK_ERRORS)
    except LookupError:
        codecs.register_error(_FALLBACK_ERRORS, _latin_1_fallback)


def detect_encoding(
    stream: BinaryIO, name: str, forced: str | None, *, scan: bool = True
) -> Encoding:
    """How to read the bytes of ``stream`` as text, reading it once; it is left at the start.

    UTF-8 (a byte-order mark or not) when every byte sequence is UTF-8; UTF-16 when it starts
    with its byte-order mark; else Windows-1252, Excel's "CSV" on Windows, with the five bytes
    Windows-1252 leaves undefined read as Latin-1. Without ``scan``, UTF-8 is taken on trust
    (``tentative``) rather than read through first: the caller finds out as it reads.
    """
    stream.seek(0)
    if forced:
        codec = "utf-8-sig" if forced == "utf-8" else forced
        return Encoding(codec=codec, errors="strict", label=_LABELS.get(forced, forced))
    head = stream.read(4)
    stream.seek(0)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return Encoding(codec="utf-16", errors="strict", label="utf-16")
    if not scan:
        return Encoding(codec="utf-8-sig", errors="strict", label="utf-8", tentative=True)
    if _is_utf8(stream):
        stream.seek(0)
        return Encoding(codec="utf-8-sig", errors="strict", label="utf-8")
    stream.seek(0)
    undefined = 0
    while chunk := stream.read(1024 * 1024):
        undefined += sum(chunk.count(byte) for byte in _WINDOWS_1252_UNDEFINED)
    stream.seek(0)
    _register_fallback()
    warning = f"{name} is not UTF-8: read it as Windows-1252"
    if undefined:
        warning += f" ({undefined} bytes Windows-1252 does not define read as Latin-1)"
    warning += "; if names look wrong, give the right one with --encoding"
    return Encoding(codec="cp1252", errors=_FALLBACK_ERRORS, label="windows-1252", warning=warning)


def _is_utf8(stream: BinaryIO) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := stream.read(1024 * 1024):
            if chunk.isascii() and not decoder.getstate()[0]:
                continue
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def check_encoding(name: str | None) -> str | None:
    """The codec name behind ``--encoding``, or a usage error for one Python does not know."""
    if name is None:
        return None
    try:
        info = codecs.lookup(name.strip())
    except LookupError:
        raise UsageError(
            f"unknown encoding {name!r}; use a name like utf-8, windows-1252 or latin-1"
        ) from None
    if not _is_text_encoding(info):
        raise UsageError(f"{name!r} is not a text encoding")
    return info.name


def _is_text_encoding(info: codecs.CodecInfo) -> bool:
    return getattr(info, "_is_text_encoding", True) is not False


# ---- format and separator ------------------------------------------------------------------


def text_stream(source: Source, encoding: Encoding) -> io.TextIOWrapper:
    """The file as text from its start; ``newline=""`` leaves line ends to the CSV reader,
    which keeps a line break inside a quoted field as the file has it."""
    source.stream.seek(0)
    return io.TextIOWrapper(
        source.stream,
        encoding=encoding.codec,
        errors=encoding.errors,
        newline="",
    )


def first_lines(text: IO[str]) -> tuple[list[str], str, int]:
    """The first line that is not blank (in a list, to be read again), its first character
    ("" for a file of blank lines), and how many blank lines came before it: empty, white
    space only, or separators only. Those are counted, not kept, so memory does not grow with
    them, and never become the header."""
    skipped = 0
    while True:
        line = text.readline(_LINE_READ)
        if not line:
            return [], "", skipped
        stripped = line.strip().lstrip("\ufeff")
        if stripped.strip(",;\t ") and stripped:
            return [line], stripped[0], skipped
        # A blank line longer than the limit is read in pieces: only its end is a line.
        skipped += line.endswith(("\n", "\r"))


def choose_format(suffix: str, first_char: str) -> str:
    """By the file's extension, else by its first character: ``[`` JSON, ``{`` JSON Lines."""
    by_extension = _EXTENSION_FORMATS.get(suffix)
    if by_extension == FORMAT_JSON and first_char == "{":
        return FORMAT_JSONL  # a .json file of one object a line
    if by_extension:
        return by_extension
    if first_char == "[":
        return FORMAT_JSON
    if first_char == "{":
        return FORMAT_JSONL
    return FORMAT_CSV


def sniff_delimiter(first_line: str, suffix: str) -> tuple[str, bool]:
    """The separator of a CSV file, by its first line that is not blank; and whether that line
    only names it (Excel's ``sep=;`` line, which Excel shows as no row at all)."""
    hint = _SEP_HINT.fullmatch(first_line.strip())
    if hint:
        return hint[1], True
    return _delimiter(first_line, suffix), False


def _delimiter(header_line: str, suffix: str) -> str:
    """The separator a header line uses: the most frequent of tab, ``;`` and ``,`` outside
    quotes; tab first for a .tsv file, comma when the header has only one column."""
    counts = {"\t": 0, ";": 0, ",": 0}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    if suffix == ".tsv" and counts["\t"]:
        return "\t"
    best = max(counts, key=lambda c: (counts[c], c == ","))
    return best if counts[best] else ","


# ---- lines of a bounded length -------------------------------------------------------------


class LineTooLong(Exception):
    """A line longer than ``MAX_RECORD_CHARS``: the file is no inventory."""

    def __init__(self, length: int) -> None:
        super().__init__(length)
        self.length = length


def over_limit(length: int) -> str:
    """How a line or a cell longer than ``MAX_LINE_CHARS`` is described."""
    return f"over 1 MiB ({length:,} characters)"


def file_over_limit(length: int, what: str = "a line") -> str:
    """Why a file with a line (or ``what``) longer than ``MAX_RECORD_CHARS`` is refused."""
    return f"{what} is over 64 MiB (at least {length:,} characters): this is no inventory"


class LineSource(Protocol):
    """What lines are read from: a text file, or one put together."""

    def readline(self, size: int = -1, /) -> str: ...


def bounded_lines(
    text: LineSource, first: Iterable[str], marker: str, held: deque[tuple[str, int]]
) -> Iterator[str]:
    """The lines of ``first`` (read already), then of ``text``, as ``readline`` splits them
    (line ends kept), none longer than ``MAX_LINE_CHARS``: a longer line is read through in
    pieces and never held whole, ``marker`` stands in its place, and ``held`` gets its first
    ``MAX_LINE_CHARS`` characters and its length. A line longer than ``MAX_RECORD_CHARS``
    raises ``LineTooLong``; memory stays within a few pieces whatever the file holds."""
    pieces = itertools.chain(first, iter(functools.partial(text.readline, _LINE_READ), ""))
    for line in pieces:
        if len(line) <= MAX_LINE_CHARS:
            yield line  # nearly every line: one test
            continue
        length = len(line.rstrip("\r\n"))
        if length <= MAX_LINE_CHARS:
            yield line  # as long as allowed, with its line end
            continue
        # A line of at least MAX_LINE_CHARS + 1: read through to its end, counting.
        prefix = line[:MAX_LINE_CHARS]
        ended = line.endswith(("\n", "\r"))
        while not ended:
            piece = text.readline(_LINE_READ)
            if not piece:
                break
            ended = piece.endswith(("\n", "\r"))
            length += len(piece.rstrip("\r\n")) if ended else len(piece)
            if length > MAX_RECORD_CHARS:
                raise LineTooLong(length)
        held.append((prefix, length))
        yield marker
