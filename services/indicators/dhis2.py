"""DHIS2 renderings of indicator rows: dataValueSets JSON and CSV, and ADX XML.

idScheme=code throughout: dataElement is the indicator code, orgUnit the gazetteer code,
categoryOptionCombo the disaggregation code, attributeOptionCombo DHIS2's `default`.
Checked against DHIS2 itself (dhis2-core: JsonDataValueSetWriter, CsvDataValueSetWriter,
DefaultAdxDataService, AdxPeriod) and its Web API documentation.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from services.indicators import catalogue
from services.indicators.service import Row

ADX_NAMESPACE = "urn:ihe:qrph:adx:2015"
STORED_BY = "komar-indicators"
# DHIS2's CSV export header, in its order (CsvDataValueSetWriter).
CSV_HEADER = (
    "dataelement",
    "period",
    "orgunit",
    "categoryoptioncombo",
    "attributeoptioncombo",
    "value",
    "storedby",
    "lastupdated",
    "comment",
    "followup",
    "deleted",
)
DATA_SET_OF = {t: code for code, t in catalogue.DATA_SETS.items()}


def timestamp(moment: datetime | None) -> str | None:
    """DHIS2's export timestamp: UTC, milliseconds, `+0000` (yyyy-MM-dd'T'HH:mm:ss.SSSZ)."""
    if moment is None:
        return None
    # isoformat ends "+00:00" in UTC; it is a third cheaper than strftime, once per value.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "+0000"


def data_value(row: Row) -> dict[str, Any]:
    """One dataValue of a dataValueSet (rounded values carry no comment: the catalogue's
    rule says which are)."""
    doc: dict[str, Any] = {
        "dataElement": row.indicator,
        "period": row.period.code,
        "orgUnit": row.place,
        "categoryOptionCombo": row.combo,
        "attributeOptionCombo": catalogue.DEFAULT_AOC,
        "value": str(row.value),
        "storedBy": STORED_BY,
    }
    if row.last_updated is not None:
        doc["lastUpdated"] = timestamp(row.last_updated)
    doc["followup"] = False
    return doc


def data_value_set(
    rows: Iterable[Row], *, data_set: str | None, period: str | None, org_unit: str | None
) -> dict[str, Any]:
    """The JSON document; dataSet, period and orgUnit on top only when the query named one."""
    doc: dict[str, Any] = {}
    if data_set is not None:
        doc["dataSet"] = data_set
    if period is not None:
        doc["period"] = period
    if org_unit is not None:
        doc["orgUnit"] = org_unit
    doc["dataValues"] = [data_value(r) for r in rows]
    return doc


def data_value_csv(rows: Iterable[Row]) -> str:
    """The CSV document, with DHIS2's header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in rows:
        writer.writerow(
            [
                r.indicator,
                r.period.code,
                r.place,
                r.combo,
                catalogue.DEFAULT_AOC,
                str(r.value),
                STORED_BY,
                timestamp(r.last_updated) or "",
                "",
                "false",
                "false",
            ]
        )
    return out.getvalue()


def adx(rows: Sequence[Row], *, exported: datetime) -> bytes:
    """ADX: one group per data set, period and org unit; categories as attributes."""
    ET.register_namespace("", ADX_NAMESPACE)
    root = ET.Element(
        f"{{{ADX_NAMESPACE}}}adx",
        {"exported": exported.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
    )
    groups: dict[tuple[str, str, str], ET.Element] = {}
    for r in rows:
        data_set = DATA_SET_OF[r.period.type]
        key = (data_set, r.period.code, r.place)
        group = groups.get(key)
        if group is None:
            group = ET.SubElement(
                root,
                f"{{{ADX_NAMESPACE}}}group",
                {"dataSet": data_set, "period": r.period.adx, "orgUnit": r.place},
            )
            groups[key] = group
        attrs = {"dataElement": r.indicator}
        attrs.update(dict(_combo_options(r.indicator, r.combo)))
        attrs["value"] = str(r.value)
        ET.SubElement(group, f"{{{ADX_NAMESPACE}}}dataValue", attrs)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _combo_options(indicator: str, combo: str) -> tuple[tuple[str, str], ...]:
    for c in catalogue.BY_CODE[indicator].combo.combos:
        if c.code == combo:
            return c.options
    raise KeyError(combo)
