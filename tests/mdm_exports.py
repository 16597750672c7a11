"""MDM exports written as the real ones are (see REALDATA/mdm/): the Intune admin centre's CSV
with its real header line (BOM, every field quoted, seven fraction digits, 0001-01-01 for no
date), Microsoft Graph's managedDevices answer (the top-level serial redacted, the real one in
hardwareInformation), and Google's ChromeOS devices answer."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.conftest import REALDATA

MDM = REALDATA / "mdm"
INTUNE_HEADER_FILE = MDM / "intune" / "DevicesWithInventory_header-only_51cols.csv"
NO_DATE_INTUNE = "0001-01-01 00:00:00.0000000"


def intune_header() -> list[str]:
    line = INTUNE_HEADER_FILE.read_text(encoding="utf-8-sig").strip()
    return [name.strip('"') for name in line.split('","')]


def intune_time(iso: str | None) -> str:
    """2026-11-30T08:59:04 as Intune writes it: 2026-11-30 08:59:04.8074356."""
    if iso is None:
        return NO_DATE_INTUNE
    return iso.replace("T", " ").rstrip("Z")[:19] + ".8074356"


def intune_csv(path: Path, devices: Iterable[Mapping[str, Any]]) -> Path:
    """Each device: serial, and optionally user (email), upn, check_in (ISO), state."""
    header = intune_header()
    lines = [",".join(f'"{name}"' for name in header)]
    for number, device in enumerate(devices):
        values = dict.fromkeys(header, "")
        values.update(
            {
                "Device ID": f"00000000-0000-0000-0000-{number:012d}",
                "Device name": f"PC-{number}",
                "Enrollment date": intune_time("2024-01-10T09:00:00Z"),
                "Last check-in": intune_time(device.get("check_in")),
                "Serial number": device["serial"],
                "Primary user UPN": device.get("upn", device.get("user", "")) or "",
                "Primary user email address": device.get("user", "") or "",
                "Managed by": "Intune",
                "Device state": device.get("state", "Managed"),
                "Model": "Latitude 5440",
                "Compliance grace period expiration": "9999-12-31 23:59:59.9999999",
                "Last EAS sync time": NO_DATE_INTUNE,
            }
        )
        lines.append(",".join('"' + values[name].replace('"', '""') + '"' for name in header))
    path.write_bytes(("\ufeff" + "\n".join(lines) + "\n").encode("utf-8"))
    return path


def graph_json(path: Path, devices: Iterable[Mapping[str, Any]]) -> Path:
    """A Graph managedDevices answer; the top-level serial redacted as the recording has it,
    unless a device gives ``top_serial``."""
    value = []
    for number, device in enumerate(devices):
        value.append(
            {
                "id": f"683dbff1-c8ff-4996-91ae-{number:012d}",
                "userId": "",
                "deviceName": "[REDACTED]",
                "managementState": device.get("state", "managed"),
                "enrolledDateTime": "2024-01-10T09:00:00Z",
                "lastSyncDateTime": device.get("check_in") or "0001-01-01T00:00:00Z",
                "operatingSystem": "macOS",
                "managementAgent": "mdm",
                "managedDeviceOwnerType": "company",
                "emailAddress": device.get("user", ""),
                "userPrincipalName": device.get("upn", "[REDACTED]"),
                "model": "MacBook Pro",
                "serialNumber": device.get("top_serial", "[REDACTED]"),
                "easActivationDateTime": "0001-01-01T00:00:00Z",
                "hardwareInformation": {"serialNumber": device["serial"], "imei": None},
            }
        )
    answer = {
        "@odata.context": "https://graph.microsoft.com/beta/$metadata#deviceManagement/managedDevices",
        "@odata.count": len(value),
        "value": value,
    }
    path.write_text(json.dumps(answer, indent=2), encoding="utf-8")
    return path


def chromeos_json(path: Path, devices: Iterable[Mapping[str, Any]]) -> Path:
    answer = {
        "kind": "admin#directory#chromeosdevices",
        "etag": '"AX6M7SfKZ"',
        "chromeosdevices": [
            {
                "kind": "admin#directory#chromeosdevice",
                "deviceId": f"06d4fd60-bed5-4fe2-8d82-{number:012d}",
                "serialNumber": device["serial"],
                "status": device.get("state", "ACTIVE"),
                "lastSync": device.get("check_in"),
                "annotatedUser": device.get("user"),
                "model": "Samsung Galaxy Chromebook",
                "lastEnrollmentTime": "2024-01-10T09:00:00.000Z",
                "orgUnitPath": "/",
            }
            for number, device in enumerate(devices)
        ],
    }
    path.write_text(json.dumps(answer), encoding="utf-8")
    return path
