"""Make devices.xlsx: the Nordlys fleet of devices.csv as a Swedish admin keeps it in Excel.

Dates are date cells (shown as Excel in Sweden shows them, yyyy-mm-dd), and the three phones
the admin added since, listed by their IMEI, are numbers: Excel turned the digits into one.
Run it again after changing devices.csv: python sample_data/make_workbook.py
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import xlsxwriter

HERE = Path(__file__).resolve().parent
# Phones added in Excel after the export, serial = IMEI (15 digits: Excel keeps them exactly).
ADDED: list[list[int | str]] = [
    [
        356938035643809,
        "Samsung Galaxy S23",
        "Phone",
        "Karin Ström",
        "karin.strom@nordlys.se",
        "Atea",
        "02.02.2024",
        "02.02.2027",
        "",
    ],
    [
        353918057362271,
        "Samsung Galaxy S23",
        "Phone",
        "Per Åkesson",
        "per.akesson@nordlys.se",
        "Atea",
        "02.02.2024",
        "",
        "",
    ],
    [
        490154203237518,
        "Samsung Galaxy A54",
        "Phone",
        "",
        "",
        "Inetum",
        "15.03.2024",
        "",
        "Spare phone in the Malmö office",
    ],
]


def main() -> None:
    with open(HERE / "devices.csv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    header = rows[0]
    devices: list[list[int | str]] = [[*row] for row in rows[1:]]
    devices += ADDED
    dated = {header.index("Purchase Date"), header.index("Renewal Date")}
    book = xlsxwriter.Workbook(str(HERE / "devices.xlsx"))
    # A fixed creation time: the same devices.csv makes the same file.
    created = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    book.set_properties({"title": "Nordlys AB devices", "author": "IT", "created": created})
    sheet = book.add_worksheet("Enheter")
    bold = book.add_format({"bold": True})
    day = book.add_format({"num_format": "yyyy-mm-dd"})
    sheet.write_row(0, 0, header, bold)
    for r, device in enumerate(devices, start=1):
        for c, value in enumerate(device):
            if isinstance(value, int):
                sheet.write_number(r, c, value)
            elif c in dated and value:
                sheet.write_datetime(r, c, dt.datetime.strptime(str(value), "%d.%m.%Y"), day)
            elif value:
                sheet.write_string(r, c, value)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, len(devices), len(header) - 1)
    sheet.set_column(0, len(header) - 1, 18)
    book.close()


if __name__ == "__main__":
    main()
