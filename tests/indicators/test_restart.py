"""`python -m services.indicators` as a real process: SIGKILL mid-stream and restart, the
`rebuild` command, and a DHIS2 client from PyPI pulling dataValueSets over HTTP."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dhis2
import httpx
import pytest

from deploy.local.infra import EmbeddedNats, free_port
from deploy.local.supervisor import Supervisor
from libs.common import places
from libs.common.db import Database
from libs.common.events import CloudEvent
from services.indicators import catalogue, geography
from services.indicators.store import bookkeeping, counting
from tests.indicators.conftest import (
    DETAIL,
    NATIONAL_READ,
    child_event,
    durables_with_short_ack_wait,
    publish,
    uuid_of,
)
from tests.support import SigningKeys

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def jwks_url(keys: SigningKeys) -> Iterator[str]:
    """The test's signing keys served as the gateway serves its JWKS."""
    body = json.dumps(keys.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    finally:
        server.shutdown()


@dataclass
class Running:
    supervisor: Supervisor
    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
async def running(
    tmp_path_factory: pytest.TempPathFactory, own_db: str, own_nats: EmbeddedNats, jwks_url: str
) -> AsyncIterator[Running]:
    port = free_port()
    env = {
        "DATABASE_URL": own_db,
        "NATS_URL": own_nats.url,
        "KOMAR_JWKS_URL": jwks_url,
        "KOMAR_INDICATORS_PORT": str(port),
        "KOMAR_LOG_LEVEL": "warning",
    }
    await durables_with_short_ack_wait(own_nats.url)
    supervisor = Supervisor(Path(tmp_path_factory.mktemp("ind-log")), ready_timeout=90)
    await asyncio.to_thread(
        supervisor.run, "indicators-migrate", "services.indicators", "migrate", env=env
    )
    await asyncio.to_thread(
        supervisor.start, "indicators", "services.indicators", env=env, port=port
    )
    try:
        yield Running(supervisor, f"http://127.0.0.1:{port}", env)
    finally:
        await asyncio.to_thread(supervisor.stop_all)


def population(n: int, seed: int) -> tuple[list[CloudEvent], Counter[str], int]:
    """n children registered in 2025 (a third closed later): events, registrations per month,
    open cases at the end of 2025."""
    rng = random.Random(seed)
    communes = [c for c in places.all_communes() if c[:2] in ("12", "17")]
    events: list[CloudEvent] = []
    per_month: Counter[str] = Counter()
    open_at_year_end = 0
    for i in range(n):
        cid = uuid_of(f"restart-{seed}-{i}")
        month = rng.randint(1, 12)
        day = rng.randint(1, 28)
        common = {
            "commune": rng.choice(communes),
            "sex": rng.choice(("female", "male")),
            "birth": f"{rng.randint(2008, 2024)}-{rng.randint(1, month):02d}",
            "registered_on": f"2025-{month:02d}-{day:02d}",
        }
        when = f"2025-{month:02d}-{day:02d}T03:00:00Z"
        events.append(child_event("registered", cid, version=1, when=when, **common))
        per_month[f"2025{month:02d}"] += 1
        if rng.random() < 1 / 3:
            events.append(
                child_event(
                    "closed", cid, version=2, status="closed", when="2025-12-30T03:00:00Z", **common
                )
            )
        else:
            open_at_year_end += 1
    return events, per_month, open_at_year_end


async def status(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get("/v1/indicators/status", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def wait_caught_up(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    deadline = asyncio.get_running_loop().time() + 120
    while not all(s["lag"] == 0 for s in (await status(client, headers))["streams"]):
        assert asyncio.get_running_loop().time() < deadline, "did not catch up"
        await asyncio.sleep(0.2)


async def cells(own_db: str) -> dict[Any, int]:
    db = Database(own_db, pool_size=1, max_overflow=0)
    try:
        async with db.transaction() as conn:
            target = await bookkeeping.active_target(conn)
            return await counting.nonzero_cells(conn, target.generation)
    finally:
        await db.close()


async def test_killed_mid_stream_and_restarted_the_values_are_the_same(
    running: Running, own_nats: EmbeddedNats, own_db: str, keys: SigningKeys
) -> None:
    first, per_month, open_cases = population(700, seed=1)
    second, more_per_month, more_open = population(200, seed=2)
    headers = keys.headers(areas=["KH"], scope=DETAIL)
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
        await publish(own_nats.url, first)
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            registry = (await status(client, headers))["streams"][0]
            if registry["last_applied_sequence"] >= 50:
                break
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        await asyncio.to_thread(running.supervisor.kill, "indicators")
        assert registry["lag"] > 0, "the service finished before it could be killed mid-stream"
        await publish(own_nats.url, second)  # while it is down
        await asyncio.to_thread(running.supervisor.restart, "indicators")
        await wait_caught_up(client, headers)

        async def value(ind: str, period: str) -> int:
            r = await client.get(
                "/v1/indicators/values",
                headers=headers,
                params={"indicator": ind, "period": period, "area": "KH"},
            )
            return sum(i["value"] for i in r.json()["items"])

        for month, count in (per_month + more_per_month).items():
            assert await value("CP_CHILD_REG", month) == count, month
        assert await value("CP_CHILD_REG", "2025") == 900
        assert await value("CP_CASE_OPEN", "2025") == open_cases + more_open
        registered = per_month + more_per_month
        assert await value("CP_CASE_OPEN", "202511") == 900 - registered["202512"]
        rounded = await public_table(client, keys)
    live = await cells(own_db)
    # `python -m services.indicators rebuild` while the service runs: the same cells
    await asyncio.to_thread(
        running.supervisor.run,
        "indicators-rebuild",
        "services.indicators",
        "rebuild",
        env=running.env,
    )
    assert await cells(own_db) == live
    # the rounding key lives in the schema: a rebuild and a restart round every cell alike
    await asyncio.to_thread(running.supervisor.restart, "indicators")
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
        assert await public_table(client, keys) == rounded


async def public_table(client: httpx.AsyncClient, keys: SigningKeys) -> list[Any]:
    """Rounded values as a principal without detail reads them: KH's provinces, a year."""
    rows: list[Any] = []
    for ind in ("CP_CHILD_REG", "CP_CASE_OPEN"):
        for period in ("202503", "2025"):
            r = await client.get(
                "/v1/indicators/values",
                headers=keys.headers(areas=["KH"], scope=NATIONAL_READ),
                params={"indicator": ind, "period": period, "area": "KH", "level": "commune"},
            )
            assert r.status_code == 200, r.text
            rows.extend(r.json()["items"])
    assert any(r["value"] for r in rows)
    assert all(r["rounded"] and r["value"] % 5 == 0 for r in rows)
    return rows


async def test_a_dhis2_client_reads_data_value_sets(
    running: Running, keys: SigningKeys, tmp_path: Path
) -> None:
    # dhis2.py builds <base>/api/dataValueSets.<json|csv>, as against a DHIS2 server
    api = dhis2.Api(f"{running.url}/v1/indicators", "warehouse", "unused")
    api.session.auth = None
    api.session.headers["Authorization"] = f"Bearer {keys.token(areas=['KH'], scope=DETAIL)}"
    params = {"dataSet": "CP_MONTHLY", "period": "202503", "orgUnit": "12", "children": "true"}
    doc = (await asyncio.to_thread(api.get, "dataValueSets", params=params)).json()
    values = doc["dataValues"]
    per_unit = sum(len(i.combo.combos) for i in catalogue.INDICATORS)
    assert len(values) == len(geography.descendants("12")) * per_unit
    csv_text = (
        await asyncio.to_thread(api.get, "dataValueSets", params=params, file_type="csv")
    ).text
    path = tmp_path / "values.csv"
    path.write_text(csv_text)
    rows = list(dhis2.load_csv(str(path)))
    assert len(rows) == len(values)
    assert {r["orgunit"] for r in rows} == {v["orgUnit"] for v in values}
    total = sum(
        int(r["value"]) for r in rows if r["dataelement"] == "CP_CHILD_REG" and r["orgunit"] == "12"
    )
    reg = {
        v["categoryOptionCombo"]: v
        for v in values
        if v["dataElement"] == "CP_CHILD_REG" and v["orgUnit"] == "12"
    }
    assert total == sum(int(v["value"]) for v in reg.values())
    assert set(reg) == {c.code for c in catalogue.SEX_AGE.combos}
