"""The demo's data: the sample inventory moved in time so that its story happens today."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path

from velory_cli.models import SOURCE_IMPORTED, Device

# The day the sample inventory was written around: its renewal dates spread about this day.
SAMPLE_ANCHOR = date(2026, 12, 1)
DATE_COLUMNS = ("Purchase Date", "Renewal Date")
NORDIC = "%d.%m.%Y"


def sample_inventory() -> str:
    """The bytes of sample_data/devices.csv as shipped with the package, decoded."""
    return (resources.files("velory_cli") / "sample_data" / "devices.csv").read_text(
        encoding="utf-8-sig"
    )


def write_shifted_sample(target: Path, today: date) -> int:
    """Write the sample to ``target`` with every date moved by (today - anchor) days.

    The file keeps the sample's Excel shape (BOM, ``;``, CRLF, dd.mm.yyyy), so the demo imports
    exactly what an admin in Sweden would. Returns the number of devices written.
    """
    import csv
    import io

    shift = timedelta(days=(today - SAMPLE_ANCHOR).days)
    reader = csv.DictReader(io.StringIO(sample_inventory(), newline=""), delimiter=";")
    fieldnames = list(reader.fieldnames or [])
    count = 0
    with target.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames, delimiter=";", lineterminator="\r\n")
        writer.writeheader()
        for row in reader:
            for column in DATE_COLUMNS:
                if row.get(column):
                    moved = datetime.strptime(row[column], NORDIC).date() + shift
                    row[column] = moved.strftime(NORDIC)
            writer.writerow(row)
            count += 1
    return count


@dataclass(frozen=True)
class DemoCast:
    """The devices the demo's story follows."""

    renewing: Device
    dustin: Device | None
    # A device due soon that changes hands after its notice went out (velory edit).
    handed_on: Device | None = None


def choose_cast(devices: list[Device], today: date) -> DemoCast:
    """The device due soonest (not overdue) that velory renews, and a Dustin device for contrast."""
    horizon = (today + timedelta(days=30)).isoformat()
    due = sorted(
        (
            device
            for device in devices
            if device.source == SOURCE_IMPORTED
            and not device.dustin
            and device.user_email
            and device.renewal_date
            and today.isoformat() <= device.renewal_date <= horizon
        ),
        key=lambda device: (device.renewal_date or "", device.serial),
    )
    if not due:
        raise LookupError("the sample inventory has no device due within 30 days")
    dustin = next((device for device in devices if device.dustin), None)
    handed_on = next((device for device in due[1:] if device.user_email != due[0].user_email), None)
    return DemoCast(renewing=due[0], dustin=dustin, handed_on=handed_on)
