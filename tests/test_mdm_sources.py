"""Reading MDM exports: each kind told from its headers or keys, its records as the check needs
them, placeholder dates as no date and unusable serials told apart."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.mdm_exports import MDM, chromeos_json, graph_json, intune_csv
from velory_cli.errors import InvalidInput
from velory_cli.importer import Source
from velory_cli.mdm import sources


def read(path: Path) -> tuple[sources.Export, list[sources.Record]]:
    with path.open("rb") as handle:
        source = Source(name=path.name, stream=handle, size=None, suffix=path.suffix.lower())
        export = sources.open_export(source)
        records = list(export.records)
    return export, records


def read_bytes(data: bytes, suffix: str = "") -> tuple[sources.Export, list[sources.Record]]:
    source = Source(name="export", stream=io.BytesIO(data), size=len(data), suffix=suffix)
    export = sources.open_export(source)
    return export, list(export.records)


# ---- the real samples ------------------------------------------------------------------------


def test_the_recorded_graph_answer_gives_the_serials_under_the_redacted_ones() -> None:
    export, records = read(MDM / "intune" / "graph-managedDevices.json")
    assert export.kind == sources.GRAPH
    assert [r.serial for r in records] == ["C39ZQB9SN6XQ", "C02DG307MD6Q"]
    first, second = records
    assert first.user == "redacted@email.com"
    assert first.last_check_in == "2021-03-10T00:24:15Z"
    assert first.state == "managed"
    # The second has no user, and is being retired: still enrolled, as listed.
    assert second.user is None
    assert second.state == "retireIssued"
    assert second.last_check_in == "2021-02-18T16:26:58Z"


def test_the_recorded_chromeos_answer() -> None:
    export, records = read(MDM / "google" / "chromeos-devices.json")
    assert export.kind == sources.CHROMEOS
    (record,) = records
    assert record.serial == "3WAZ9FGNC00030E"
    assert record.user == "integration-development@jupiterone.dev"
    assert record.last_check_in == "2022-05-19T16:14:15Z"
    assert record.state == "ACTIVE"


def test_the_recorded_kandji_answer_has_a_redacted_serial() -> None:
    export, records = read(MDM / "kandji" / "devices.json")
    assert export.kind == sources.KANDJI
    (record,) = records
    assert sources.unusable_serial(record.serial) == sources.SKIP_REDACTED
    assert record.last_check_in == "2022-09-19T12:39:21Z"
    assert record.user == "redacted@example.com"


@pytest.mark.parametrize(
    "name",
    ["DevicesWithInventory_header-only_51cols.csv", "DevicesWithInventory_header-only_48cols.csv"],
)
def test_the_real_intune_header_lines_are_intune(name: str) -> None:
    export, records = read(MDM / "intune" / name)
    assert export.kind == sources.INTUNE_CSV
    assert records == []


@pytest.mark.parametrize("name", ["ComputerTemplate.csv", "MobileDeviceTemplate.csv"])
def test_the_jamf_templates_are_jamf(name: str) -> None:
    export, records = read(MDM / "jamf" / name)
    assert export.kind == sources.JAMF_CSV
    assert records == []


# ---- exports made like the real ones ---------------------------------------------------------


def test_an_intune_csv_as_the_admin_centre_writes_it(tmp_path: Path) -> None:
    path = intune_csv(
        tmp_path / "DevicesWithInventory.csv",
        [
            {"serial": "PF1K2X9Z", "user": "asa@example.com", "check_in": "2026-11-30T08:59:04Z"},
            {"serial": "", "user": "b@example.com"},
            {"serial": "0", "user": "c@example.com"},
            {"serial": "0315-2787-1432-4710-2587-4283-13"},
            {"serial": "C02ZK1QX", "check_in": None, "state": "Retire pending"},
        ],
    )
    export, records = read(path)
    assert export.kind == sources.INTUNE_CSV
    assert export.encoding == "utf-8"
    assert [r.row for r in records] == [2, 3, 4, 5, 6]
    first = records[0]
    assert (first.serial, first.user, first.last_check_in) == (
        "PF1K2X9Z",
        "asa@example.com",
        "2026-11-30T08:59:04Z",
    )
    assert first.enrolled_at == "2024-01-10T09:00:00Z"
    reasons = [sources.unusable_serial(r.serial) for r in records]
    assert reasons == [None, "empty", "placeholder", "virtual_machine", None]
    # 0001-01-01 00:00:00.0000000 is Intune's "never": no date, and no warning about it.
    assert records[4].last_check_in is None
    assert records[4].state == "Retire pending"
    assert export.unreadable_dates == [0]


def test_a_graph_top_level_serial_wins_where_it_is_given(tmp_path: Path) -> None:
    path = graph_json(
        tmp_path / "graph.json",
        [
            {"serial": "HW1", "top_serial": "TOP1"},
            {"serial": "HW2", "top_serial": ""},
            {"serial": "HW3"},
        ],
    )
    _, records = read(path)
    assert [r.serial for r in records] == ["TOP1", "HW2", "HW3"]
    assert all(r.last_check_in is None for r in records)  # 0001-01-01T00:00:00Z


def test_a_chromeos_export_made_like_the_real_one(tmp_path: Path) -> None:
    path = chromeos_json(
        tmp_path / "chromeos.json",
        [{"serial": "5CD1", "user": "per@example.com", "check_in": "2026-11-01T10:00:00.123Z"}],
    )
    export, records = read(path)
    assert export.kind == sources.CHROMEOS
    assert records[0].last_check_in == "2026-11-01T10:00:00Z"


def test_jamf_pro_api_json() -> None:
    data = (
        b'{"totalCount": 1, "results": [{"id": "1", "general": {"name": "Mac-1",'
        b' "lastContactTime": "2026-11-29T07:00:00.123Z", "remoteManagement": {"managed": true}},'
        b' "hardware": {"serialNumber": "C02JAMF1", "model": "MacBook Air"},'
        b' "userAndLocation": {"username": "asa", "email": "asa@example.com"}}]}'
    )
    export, records = read_bytes(data, ".json")
    assert export.kind == sources.JAMF_JSON
    (record,) = records
    assert (record.serial, record.user, record.state) == ("C02JAMF1", "asa@example.com", "managed")
    assert record.last_check_in == "2026-11-29T07:00:00Z"


def test_jamf_classic_api_json_with_epochs() -> None:
    data = (
        b'{"computers": [{"id": 1, "name": "Mac-1", "managed": false, "serial_number": "C02OLD",'
        b' "email_address": "per@example.com", "report_date_epoch": 1764489600000}]}'
    )
    export, records = read_bytes(data)
    assert export.kind == sources.JAMF_JSON
    (record,) = records
    assert record.state == "unmanaged"
    assert record.last_check_in == "2025-11-30T08:00:00Z"


def test_a_jamf_csv_with_its_check_in_as_jamf_shows_it() -> None:
    data = (
        b"Computer Name,Serial Number,Last Check-in,Email Address,Username\n"
        b"Mac-1,C02CSV1,2026-11-28 at 2:37 PM,asa@example.com,asa\n"
    )
    export, records = read_bytes(data, ".csv")
    assert export.kind == sources.GENERIC_CSV  # nothing in it says Jamf: --source names it
    assert records[0].last_check_in == "2026-11-28T14:37:00Z"
    assert records[0].user == "asa@example.com"


def test_a_generic_csv_semicolons_windows_1252_and_a_sep_line() -> None:
    data = "sep=;\nSerienummer;Serial;Email;Last seen\nx;ÅB1;åsa@exempel.se;01.11.2026\n"
    export, records = read_bytes(data.encode("cp1252"), ".csv")
    assert export.kind == sources.GENERIC_CSV
    assert export.encoding == "windows-1252"
    assert export.warnings
    (record,) = records
    assert (record.serial, record.user) == ("ÅB1", "åsa@exempel.se")
    assert record.last_check_in == "2026-11-01T00:00:00Z"
    assert record.row == 3


def test_json_lines_of_devices() -> None:
    data = b'{"serial": "L1", "email": "a@example.com"}\n{"serial": "L2"}\n'
    export, records = read_bytes(data, ".jsonl")
    assert export.kind == sources.GENERIC_JSON
    assert [r.serial for r in records] == ["L1", "L2"]


def test_a_large_json_array_is_read_element_by_element() -> None:
    # Longer than one read chunk, with a value split across chunks.
    devices = ",".join(
        f'{{"serial_number": "K{n:07d}", "last_check_in": "2026-11-30T10:00:00.5Z",'
        f' "device_id": "{n}", "blueprint_id": "b", "user": ""}}'
        for n in range(20000)
    )
    export, records = read_bytes(f"[{devices}]".encode())
    assert export.kind == sources.KANDJI
    assert len(records) == 20000
    assert records[-1].serial == "K0019999"
    assert records[12345].user is None


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"Name,Model\nx,y\n", "no serial column"),
        (b'{"value": 3}', "no list of devices"),
        (b"[1, 2", "not a device record"),
        (b'[{"serialNumber": "A"}, ', "ends too soon"),
        (b'"Serial"\n"unclosed\n', "not a CSV table"),
    ],
)
def test_what_is_no_export_is_refused_as_a_whole(data: bytes, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        read_bytes(data)


# ---- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-03-15 08:59:04.8074356", "2021-03-15T08:59:04Z"),
        ("2022-06-24 14:20:19.961496+00:00", "2022-06-24T14:20:19Z"),
        ("2023-10-11T14:37:12.345+0200", "2023-10-11T12:37:12Z"),
        ("2026-11-28 at 12:05 AM", "2026-11-28T00:05:00Z"),
        ("2026-11-28", "2026-11-28T00:00:00Z"),
        ("0001-01-01 00:00:00.0000000", None),
        ("0001-01-01T00:00:00Z", None),
        ("9999-12-31 23:59:59.9999999", None),
        ("", None),
        (None, None),
        (1764489600, "2025-11-30T08:00:00Z"),
        (0, None),
    ],
)
def test_times(text: object, expected: str | None) -> None:
    assert sources.parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "2026-02-30 10:00"])
def test_a_time_that_is_none_is_unreadable(text: str) -> None:
    with pytest.raises(ValueError):
        sources.parse_time(text)


@pytest.mark.parametrize(
    ("serial", "reason"),
    [
        ("PF1K2X9Z", None),
        ("  ", "empty"),
        ("0", "placeholder"),
        ("000000", "placeholder"),
        ("To be filled by O.E.M.", "placeholder"),
        ("[REDACTED]", "redacted"),
        ("0315-2787-1432-4710-2587-4283-13", "virtual_machine"),
        ("6.37702E+15", "lost_by_excel"),
        # Not what a spreadsheet writes for a number: serials, as velory import takes them.
        ("9E-1", None),
        ("1E+5", None),
        ("AB\x1b1", "control_characters"),
    ],
)
def test_unusable_serials(serial: str, reason: str | None) -> None:
    assert sources.unusable_serial(serial) == reason


def test_a_wrapped_answer_is_read_element_by_element_too() -> None:
    # The array inside Graph's answer is never decoded whole: a broken element far into it
    # shows as that element's problem, after the ones before it were read.
    good = ",".join(
        f'{{"serialNumber": "G{n:06d}", "managementAgent": "mdm", "emailAddress": ""}}'
        for n in range(5000)
    )
    data = f'{{"@odata.context": "x", "value": [{good}, {{"serialNumber": }}]}}'.encode()
    source = Source(name="g.json", stream=io.BytesIO(data), size=len(data), suffix=".json")
    export = sources.open_export(source)
    read: list[str] = []
    with pytest.raises(InvalidInput, match="not a JSON export"):
        for record in export.records:
            read.append(record.serial)
    assert len(read) == 5000 and export.kind == sources.GRAPH


def test_a_chromebook_without_an_annotated_user_has_its_recent_user() -> None:
    data = (
        b'{"chromeosdevices": [{"kind": "admin#directory#chromeosdevice", "serialNumber": "CB9",'
        b' "status": "ACTIVE", "recentUsers": [{"type": "USER_TYPE_MANAGED",'
        b' "email": "bo@example.com"}]}]}'
    )
    _, records = read_bytes(data, ".json")
    assert records[0].user == "bo@example.com"


def test_blank_lines_above_the_header_count_as_rows() -> None:
    _, records = read_bytes(b"\n;;\nSerial,Email\nA1,a@example.com\n", ".csv")
    assert [(r.row, r.serial) for r in records] == [(4, "A1")]
