"""`python -m bench.dashboard`: what a staff member's browser pays for the overview.

Against the platform `make run` runs (the gateway at KOMAR_GATEWAY_URL or 127.0.0.1:8000, the
dashboard at KOMAR_DASHBOARD_URL or 127.0.0.1:8080, the admin secret in var/admin-secret),
it makes a user of one commune, signs in with Debian's Chromium (Playwright) and loads the
overview BENCH_DASHBOARD_LOADS times (20), then prints the median and worst of:
  weight   bytes of everything the page needs (document, style sheets, icon; the Khmer font
           when the page is in Khmer and the device has no Khmer font of its own), as sent
           (Resource Timing transferSize, or encodedBodySize for a file from the cache)
  fcp      time to first contentful paint, from navigation start
  load     time to the load event
in English and in Khmer. Loopback only: a measure of the page's own cost, not of a network.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import sys
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import async_playwright

GATEWAY = os.environ.get("KOMAR_GATEWAY_URL", "http://127.0.0.1:8000")
DASHBOARD = os.environ.get("KOMAR_DASHBOARD_URL", "http://127.0.0.1:8080")
LOADS = int(os.environ.get("BENCH_DASHBOARD_LOADS", "20"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MEASURE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  const size = e => e.transferSize || e.encodedBodySize || 0;
  const resources = performance.getEntriesByType('resource');
  return {
    weight: size(nav) + resources.reduce((n, e) => n + size(e), 0),
    requests: 1 + resources.length,
    fcp: fcp ? fcp.startTime : null,
    load: nav.loadEventEnd,
  };
}"""


def _user(password: str) -> str:
    secret = (
        os.environ.get("KOMAR_ADMIN_SECRET")
        or (Path(os.environ.get("KOMAR_DATA_DIR", "var")) / "admin-secret").read_text().strip()
    )
    username = f"bench-{secrets.token_hex(4)}"
    with httpx.Client(base_url=GATEWAY, timeout=30) as client:
        r = client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "admin",
                "client_secret": secret,
            },
        )
        r.raise_for_status()
        r = client.post(
            "/v1/admin/users",
            headers={"Authorization": f"Bearer {r.json()['access_token']}"},
            json={
                "username": username,
                "password": password,
                "name": "Bench Commune",
                "org": "ccwc-120101",
                "org_type": "government",
                "scopes": [
                    "registry:read",
                    "referrals:read",
                    "funds:read",
                    "funds:approve",
                    "casework:read",
                    "indicators:read",
                ],
                "areas": ["120101"],
            },
        )
        r.raise_for_status()
    return username


async def _measure(lang: str, username: str, password: str) -> list[dict[str, Any]]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{DASHBOARD}/sign-in")
        await page.fill("input[name=username]", username)
        await page.fill("input[name=password]", password)
        await page.click("form[action='/sign-in'] button[type=submit]")
        await page.wait_for_load_state()
        await page.click(f"button[name=lang][value={lang}]")
        await page.wait_for_load_state()
        found = []
        for _ in range(LOADS):
            await page.goto(f"{DASHBOARD}/", wait_until="load")
            await page.wait_for_timeout(50)
            found.append(await page.evaluate(MEASURE))
        await browser.close()
    return found


def _summary(name: str, rows: list[dict[str, Any]]) -> str:
    weights = [r["weight"] for r in rows]
    fcps = [r["fcp"] for r in rows if r["fcp"] is not None]
    loads = [r["load"] for r in rows]
    return (
        f"{name:3} weight {statistics.median(weights) / 1024:5.1f} KiB"
        f" in {rows[0]['requests']} requests,"
        f" first paint median {statistics.median(fcps):5.1f} ms (worst {max(fcps):5.1f}),"
        f" load median {statistics.median(loads):5.1f} ms (worst {max(loads):5.1f})"
    )


def main() -> int:
    password = secrets.token_urlsafe(18)
    username = _user(password)
    for lang in ("en", "km"):
        rows = asyncio.run(_measure(lang, username, password))
        print(_summary(lang, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
