"""`python -m bench.soak` (`make soak`): mixed load through the gateway for ten minutes on a
platform seeded with 100,000 children, then checks that nothing was lost or doubled.

1. The whole platform as `make run` runs it (bench/platform.py), seeded through
   children:batch with SOAK_CHILDREN children (a tenth of them in one crowded commune) and
   the workflows' clients, providers and funds (bench/workflows.py); every consumer caught up.
2. The mix, every part at once through the gateway: registrations spread and crowded, reads
   by id, name searches, referral and grant workflows, indicator pulls. First each part runs
   back to back for SOAK_CALIBRATE_SECONDS (the measured maximum of the mix), then the soak
   runs every part paced at SOAK_LOAD (0.7) of its own maximum for SOAK_SECONDS.
3. Once every consumer has caught up: the checks of bench/soak_checks.py (children ==
   CP_CHILD_REG, the ledger, events per consumer), p50/p99 and errors per minute
   (SOAK_BUCKET_SECONDS), RSS per process at the start and the end of the soak window.

Prints the report, writes var/soak/results.json, and exits 1 when a check fails, a request
failed, the last minute's p99 is over 1.5 x the first's or a process grew by 20 % or more.
SOAK_SECONDS=60 SOAK_CHILDREN=2000 makes a short try.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import soak_checks, workflows
from bench.children import child_bodies
from bench.infra import machine, terminate_as_exit, write_results
from bench.platform import WholePlatform, memory_mib
from bench.report import WORKFLOWS
from bench.scenarios import COLLECTION, CROWDED_COMMUNE, batch_register
from bench.soak_report import report, verdicts
from deploy.local.supervisor import REPO_ROOT
from libs.common import clock

ROOT = REPO_ROOT / "var" / "soak"
SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
CHILDREN = int(os.environ.get("SOAK_CHILDREN", "100000"))
CALIBRATE_SECONDS = float(os.environ.get("SOAK_CALIBRATE_SECONDS", "30"))
LOAD = float(os.environ.get("SOAK_LOAD", "0.7"))
BUCKET_SECONDS = float(os.environ.get("SOAK_BUCKET_SECONDS", "60"))
CATCH_UP_TIMEOUT = float(os.environ.get("SOAK_CATCH_UP_TIMEOUT", "3600"))
WORKFLOW_CHILDREN = 64
# part -> connections (workers) in the mix
CONNECTIONS = {
    "register-spread": 4,
    "register-crowded": 2,
    "read": 4,
    "search": 2,
    "referral": 2,
    "grant": 2,
    "indicators": 1,
}


def say(message: str) -> None:
    print(f"soak | {message}", flush=True)


class Soak(WholePlatform):
    def __init__(self, root: Path) -> None:
        super().__init__(root, [], ready_timeout=120.0)
        self.results: dict[str, Any] = {
            "machine": machine(),
            "settings": {
                "seconds": SECONDS,
                "children": CHILDREN,
                "calibrate_s": CALIBRATE_SECONDS,
                "load": LOAD,
                "bucket_s": BUCKET_SECONDS,
                "connections": CONNECTIONS,
            },
        }

    def set_up(self) -> None:
        """Clients, the seeded children, the workflows' providers and funds."""
        platform = workflows.Platform(self.gateway, self.admin_secret)
        try:
            registry = platform.client(
                "soak", "soak-moswvy", "government", ["registry:read", "registry:write"], ["KH"]
            )
            scopes = ["indicators:read", "indicators:read:detail"]
            reader = platform.client("soak-ministry", "soak-moswvy", "government", scopes, ["KH"])
            self.registry_client = platform.credentials[registry]
            self.reader_client = platform.credentials[reader]
        finally:
            platform.close()
        crowded = CHILDREN // 10
        say(f"seeding {CHILDREN:,} children ({crowded:,} in commune {CROWDED_COMMUNE})")
        seed = child_bodies(CHILDREN - crowded, seed=21)
        seed += child_bodies(crowded, seed=22, commune=CROWDED_COMMUNE)
        started = time.time()
        ids, _, ended = batch_register(self.gateway, self.fresh(self.registry_client), seed, say)
        self.ids, self.names = ids, sorted({b["given_name"] for b in seed})
        caught_up = self.wait_caught_up(CATCH_UP_TIMEOUT)
        say(
            f"seeded in {ended - started:.0f} s, "
            f"counted everywhere after {caught_up - started:.0f} s"
        )
        self.results["seeding"] = {
            "children": len(ids),
            "accepted_s": round(ended - started, 1),
            "counted_s": round(caught_up - started, 1),
        }
        self.workflow_setup = workflows.set_up(
            self.gateway,
            self.admin_secret,
            child_bodies(WORKFLOW_CHILDREN, seed=23),
            caught_up=self.caught_up,
            timeout=CATCH_UP_TIMEOUT,
            say=lambda line: say(f"  set-up: {line}"),
        )

    def fresh(self, credentials: tuple[str, str]) -> str:
        return workflows.fresh_token(self.gateway, credentials)

    def mix(self, rates: dict[str, float] | None) -> list[dict[str, Any]]:
        """The parts of the mix, with fresh tokens (they live 15 minutes); paced at `rates`.

        The grant workflow of the calibration and of the soak act on different children: a
        grant the calibration's window closed on stays open, and a second request for that
        child would rightly be refused (409)."""
        half = 1 if rates else 0
        registry = {"Authorization": f"Bearer {self.fresh(self.registry_client)}"}
        reader = {"Authorization": f"Bearer {self.fresh(self.reader_client)}"}
        referral_tokens, grant_tokens = self.workflow_setup.refreshed(self.gateway)
        month = dt.datetime.now(clock.CAMBODIA).strftime("%Y%m")
        post = {"method": "POST", "paths": [COLLECTION], "expect": [201], "headers": registry}
        parts: list[dict[str, Any]] = [
            {"name": "register-spread", "bodies": child_bodies(8192, seed=24), **post},
            {
                "name": "register-crowded",
                "bodies": child_bodies(4096, seed=25, commune=CROWDED_COMMUNE),
                **post,
            },
            {
                "name": "read",
                "paths": [f"{COLLECTION}/{i}" for i in self.ids[:: max(1, len(self.ids) // 5000)]],
                "headers": registry,
            },
            {
                "name": "search",
                "paths": [f"{COLLECTION}?q={name}&limit=20" for name in self.names],
                "headers": registry,
            },
            {
                "name": "referral",
                "workflow": WORKFLOWS["referral"][2],
                "items": self.workflow_setup.referral_items,
                "tokens": referral_tokens,
            },
            {
                "name": "grant",
                "workflow": WORKFLOWS["grant"][2],
                "items": self.workflow_setup.grant_items[half::2],
                "tokens": grant_tokens,
                "partition_items": True,
            },
            {
                "name": "indicators",
                "paths": [
                    f"/v1/indicators/values?indicator={code}&period={month}&area=KH&level=province"
                    for code in ("CP_CHILD_REG", "CP_CASE_OPEN", "CP_REF_MADE", "CP_GRANT_APPROVED")
                ],
                "headers": reader,
            },
        ]
        for part in parts:
            part["connections"] = CONNECTIONS[part["name"]]
            part["rate"] = (rates or {}).get(part["name"], 0.0)
        return parts

    def run_mix(self, label: str, seconds: float, rates: dict[str, float] | None) -> dict[str, Any]:
        job = {"base_url": self.gateway, "parts": self.mix(rates), "warmup_s": 2.0}
        job["duration_s"] = seconds
        return self.loadgen.run(label, job, self.watch())

    def memory(self) -> dict[str, Any]:
        pids = {name: [pid] for name, pid in self.component_pids().items()}
        return memory_mib(pids | self.infra_pids())


def achieved(raw: dict[str, Any]) -> dict[str, float]:
    """Each part's rate in a run: requests/s, or workflows/s for a workflow."""
    out = {}
    for name, part in raw["parts"].items():
        done = part["workflows"]["completed"] if "workflows" in part else part["requests"]
        out[name] = round(done / raw["duration_s"], 2)
    return out


def main() -> int:
    soak = Soak(ROOT)
    results = soak.results
    started = time.monotonic()
    with terminate_as_exit():
        soak.wipe()
        try:
            say(soak.start())
            soak.start_platform(say)
            soak.set_up()
            say(f"the mix's maximum: every part back to back for {CALIBRATE_SECONDS:g} s")
            maximum = achieved(soak.run_mix("soak-calibrate", CALIBRATE_SECONDS, None))
            rates = {name: round(LOAD * rate, 2) for name, rate in maximum.items()}
            results["maximum_per_s"], results["rates_per_s"] = maximum, rates
            say(f"maximum {maximum}; soaking at {LOAD:.0%} of it for {SECONDS:g} s")
            soak.wait_caught_up(CATCH_UP_TIMEOUT)
            results["memory_start"] = soak.memory()
            began = time.time()
            raw = soak.run_mix("soak", SECONDS, rates)
            results["memory_end"] = soak.memory()
            caught_up = soak.wait_caught_up(CATCH_UP_TIMEOUT)
            results["catch_up_s"] = round(caught_up - raw["ended_at"], 1)
            results["parts"] = {
                name: {
                    "per_s": round(
                        (p["workflows"]["completed"] if "workflows" in p else p["requests"])
                        / SECONDS,
                        2,
                    ),
                    "requests": p["requests"],
                    "errors": p["errors"],
                    "error_samples": p.get("error_samples")
                    or [s for step in p.get("steps", []) for s in step["error_samples"]],
                }
                for name, p in raw["parts"].items()
            }
            results["per_minute"] = soak_checks.per_minute(raw["parts"], BUCKET_SECONDS)
            results["cores"] = raw["cores"]
            reader = soak.fresh(soak.reader_client)
            results["checks"] = soak_checks.check(
                soak.env, soak.gateway, reader, began, time.time()
            )
        except Exception as exc:
            results["failure"] = (
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            )
            say(f"failed: {results['failure']}")
        finally:
            say("stopping every process")
            soak.stop_all()
    results["verdicts"] = verdicts(results)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    write_results(ROOT, results, report(results))
    return 0 if all(results["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
