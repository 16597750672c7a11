"""Files in, validated rows and a row-numbered report out: ``velory import``.

The file is read as it comes from Excel or another asset system: CSV with ``,`` ``;`` or tab
between fields, any line ends, UTF-8 with or without a byte-order mark or Windows-1252; a JSON
array of objects; JSON Lines; a workbook (``.xlsx``, ``.xlsm``, ``.xls``, ``.ods``); or
Snipe-IT's API answer. Rows stream through in chunks, so a file of a million rows
takes no more memory than one of a thousand: each chunk is checked, its serials are looked up
with one query, and its inserts, updates and history are written a chunk at a time. The whole
import is one transaction; a file with an invalid row writes nothing unless ``skip_invalid``.

Every problem is reported with the row an admin finds it at: the spreadsheet row (the header is
row 1), the element of a JSON array (from 1) or the line of a JSON Lines file, and the column as
the file spells it.

The package, from the bottom up; none of its modules imports one listed after it:
``columns`` (the fields, and the headers that name them), ``report`` (the result),
``sources`` (opening a file, its encoding and format), ``readers`` (its rows), ``workbooks``
(the rows of a sheet), ``rejects``
(the rejected rows written back out), ``writes`` (the import's own SQL), ``job`` (the checks
and the import itself).
"""

from velory_cli.importer.columns import (
    ALIASES,
    FIELDS,
    map_columns,
    normalise_header,
    parse_column_options,
)
from velory_cli.importer.job import PROGRESS_MIN_BYTES, ImportOptions, import_file
from velory_cli.importer.rejects import RejectsWriter, WorkbookRejectsWriter
from velory_cli.importer.report import SHOWN_ERRORS, ImportReport, RowError
from velory_cli.importer.sources import Source, check_encoding, detect_encoding, open_source

__all__ = [
    "ALIASES",
    "FIELDS",
    "PROGRESS_MIN_BYTES",
    "SHOWN_ERRORS",
    "ImportOptions",
    "ImportReport",
    "RejectsWriter",
    "RowError",
    "Source",
    "WorkbookRejectsWriter",
    "check_encoding",
    "detect_encoding",
    "import_file",
    "map_columns",
    "normalise_header",
    "open_source",
    "parse_column_options",
]
