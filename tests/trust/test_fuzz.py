"""A schema-based fuzzer over the running platform: schemathesis reads the merged
/openapi.json from the gateway and attacks every operation through it, with every check,
as a government officer over all of Cambodia (and the admin API as the admin). The
document must describe the API exactly: every status, every content type, every body."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import httpx

from libs.common.auth import SCOPES
from tests.e2e.conftest import Platform
from tests.trust.conftest import new_caller

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
EXAMPLES_PER_OPERATION = 10
SEED = 10  # a fixed seed: the same cases on every run, so that a failure reproduces

# The officer holds every scope but admin; the admin API is fuzzed with the admin's token.
OFFICER_SCOPES = sorted(SCOPES - {"admin"})

# Positive cases are schema-valid, so they must not be refused for their form (type,
# pattern, length, enum: the negative cases check those answer 4xx). A 422 remains right
# for the rules no JSON Schema can state: a code must be in the gazetteer (16,473 of them),
# a cursor must be one this API issued, a disaster grant names its shock, a patch must
# change something. The problem's `errors` then name the rule. An If-Match made up by the
# fuzzer is rightly 412, and a PATCH without one 428, as is a PUT that would replace a
# child's case plan without one (whether a plan exists is no rule of the schema either).
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "412", "422", "428"]

[checks.missing_required_header]
expected-statuses = ["400", "401", "403", "422", "428"]
"""


def _schemathesis(
    base: str, workdir: Path, authorization: str, *filters: str
) -> subprocess.CompletedProcess[str]:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    return subprocess.run(
        [
            SCHEMATHESIS,
            "--config-file",
            str(config),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--header",
            f"Authorization: {authorization}",
            "--no-color",
            *filters,
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _figures(out: str) -> str:
    """`operations, cases, outcome` from schemathesis's summary."""
    tested = re.search(r"Tested: (\d+)", out)
    cases = re.search(r"(\d+) generated", out)
    outcome = re.findall(r"=+ (.+?) in [0-9.]+s =+", out)
    return (
        f"{tested[1] if tested else '?'} operations, {cases[1] if cases else '?'} cases: "
        f"{outcome[-1] if outcome else '?'}"
    )


async def test_every_operation_holds_to_the_published_document(
    platform: Platform,
    gateway: httpx.AsyncClient,
    admin_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    officer = await new_caller(
        gateway, admin_headers, scopes=OFFICER_SCOPES, areas=["KH"], org_type="government"
    )
    runs = {
        # A rebuild replays every stream: not work for a fuzzer to start over and over.
        "services": (
            officer.headers["Authorization"],
            ("--exclude-path-regex", "^/v1/admin/", "--exclude-path", "/v1/indicators/rebuild"),
        ),
        "admin": (admin_headers["Authorization"], ("--include-path-regex", "^/v1/admin/")),
    }
    reports: dict[str, str] = {}
    for name, (authorization, filters) in runs.items():
        workdir = tmp_path / name
        workdir.mkdir()
        done = await asyncio.to_thread(
            _schemathesis, platform.gateway, workdir, authorization, *filters
        )
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-20_000:]
        reports[name] = _figures(out)
    print("schemathesis:", reports)
