"""deploy/k8s: both overlays render, validate against Kubernetes' schemas, and keep our promises.

Rendering needs `kubectl` (with its built-in kustomize); without it those tests are skipped.
Core resources are validated offline and strictly (unknown fields are errors) with
kubernetes-validate; custom resources (CloudNativePG) are checked field by field here.
The stream set-up the nats-streams Job runs is tested against real NATS servers.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import nats
import pytest
import yaml
from nats.js.api import StorageType, StreamConfig

from dashboard.settings import DashboardSettings
from deploy.local.infra import EmbeddedNats, free_port, nats_server_binary

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "production")
NAMESPACE = "komar"
# The oldest Kubernetes we support, and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

# component -> (module run by `python -m`, Deployment label app.kubernetes.io/component)
COMPONENTS = {
    "gateway": ("gateway", "gateway"),
    "registry": ("services.registry", "service"),
    "referrals": ("services.referrals", "service"),
    "funds": ("services.funds", "service"),
    "indicators": ("services.indicators", "service"),
    "webhooks": ("services.webhooks", "service"),
    "casework": ("services.casework", "service"),
}
SERVICES = [name for name, (_, tier) in COMPONENTS.items() if tier == "service"]
# The staff's web pages: no database, no NATS, no migrations; calls only the gateway, and
# keeps its sign-in sessions in memory, so it runs as exactly one pod.
DASHBOARD = "dashboard"
STREAMS = {
    "REGISTRY": ["registry.>"],
    "REFERRALS": ["referrals.>"],
    "FUNDS": ["funds.>"],
    "CASEWORK": ["casework.>"],
    "DEADLETTER": ["deadletter.>"],
}
# Custom resources we ship and check by hand (kubernetes-validate knows only built-in kinds).
CUSTOM_KINDS = {("postgresql.cnpg.io/v1", "Cluster"), ("postgresql.cnpg.io/v1", "ScheduledBackup")}
BUILTIN_GROUPS = {"", "apps", "batch", "policy", "autoscaling"}

Manifest = dict[str, Any]


# ------------------------------------------------------------------------------ rendering


def render(overlay: str) -> list[Manifest]:
    """`kubectl kustomize deploy/k8s/overlays/<overlay>` as a list of resources."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomize overlays cannot be rendered")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kustomize {overlay} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


_RENDERED: dict[str, list[Manifest]] = {}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    """The name of each overlay in turn."""
    return str(request.param)


@pytest.fixture(scope="module")
def manifests(overlay: str) -> list[Manifest]:
    """Every resource the overlay renders (rendered once per overlay)."""
    if overlay not in _RENDERED:
        _RENDERED[overlay] = render(overlay)
    return _RENDERED[overlay]


@pytest.fixture(scope="module")
def production() -> list[Manifest]:
    """Every resource of the production overlay."""
    if "production" not in _RENDERED:
        _RENDERED["production"] = render("production")
    return _RENDERED["production"]


def default_port(component: str) -> int:
    """The component's port when no KOMAR_<NAME>_PORT is set (libs/common/settings.py; the
    dashboard's in dashboard/settings.py, which extends it)."""
    return int(DashboardSettings.model_fields[f"{component}_port"].default)


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    """The resources of one kind."""
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    """The one resource of `kind` called `name` (generated names match on their prefix)."""
    found = [
        m
        for m in of_kind(manifests, kind)
        if m["metadata"]["name"] == name
        or re.fullmatch(rf"{name}-[a-z0-9]{{10}}", m["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_templates(manifests: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    """(workload, pod template) of every Deployment and Job."""
    for m in manifests:
        if m["kind"] in ("Deployment", "Job"):
            yield m, m["spec"]["template"]


def is_builtin(api_version: str) -> bool:
    """Whether an apiVersion belongs to Kubernetes itself."""
    group = api_version.rpartition("/")[0]
    return group in BUILTIN_GROUPS or group.endswith(".k8s.io")


# ------------------------------------------------------------------------------ schemas


def test_overlay_renders_every_component(manifests: list[Manifest]) -> None:
    for name, (module, tier) in COMPONENTS.items():
        deployment = named(manifests, "Deployment", name)
        assert (
            deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
            == tier
        )
        assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == [module]
        named(manifests, "Service", name)
        named(manifests, "PodDisruptionBudget", name)
        named(manifests, "Job", f"{name}-migrate")
    dashboard = named(manifests, "Deployment", DASHBOARD)
    assert dashboard["spec"]["template"]["spec"]["containers"][0]["args"] == [DASHBOARD]
    named(manifests, "Service", DASHBOARD)
    named(manifests, "PodDisruptionBudget", DASHBOARD)
    named(manifests, "Job", "nats-streams")
    named(manifests, "Cluster", "komar-db")
    named(manifests, "Ingress", "gateway")
    named(manifests, "Ingress", DASHBOARD)
    for m in manifests:
        if m["kind"] != "Namespace":
            assert m["metadata"].get("namespace") == NAMESPACE, m["metadata"]["name"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_resources_validate_strictly(manifests: list[Manifest], version: str) -> None:
    problems = []
    for m in manifests:
        if not is_builtin(m["apiVersion"]):
            assert (m["apiVersion"], m["kind"]) in CUSTOM_KINDS, f"unchecked kind {m['kind']}"
            continue
        try:
            kubernetes_validate.validate(m, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(str(p) for p in exc.path)
            problems.append(f"{m['kind']}/{m['metadata']['name']}: {path}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_the_validator_refuses_a_broken_manifest(production: list[Manifest]) -> None:
    broken = json.loads(json.dumps(named(production, "Deployment", "registry")))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


# ------------------------------------------------------------------------------ workloads


def test_deployments_probe_limit_and_run_unprivileged(manifests: list[Manifest]) -> None:
    for deployment in of_kind(manifests, "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        port = default_port(name)
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert pod["terminationGracePeriodSeconds"] >= 20, name
        assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep", name
        assert pod["topologySpreadConstraints"], name
        assert pod["affinity"]["podAntiAffinity"], name


def test_every_container_has_requests_limits_and_a_locked_down_context(
    manifests: list[Manifest],
) -> None:
    for workload, template in pod_templates(manifests):
        name = workload["metadata"]["name"]
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) >= {"cpu", "memory"}, (name, bound)
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name


def test_configuration_comes_from_the_configmap_and_secrets_by_reference(
    manifests: list[Manifest],
) -> None:
    config = named(manifests, "ConfigMap", "komar-config")["metadata"]["name"]
    for workload, template in pod_templates(manifests):
        (container,) = template["spec"]["containers"]
        assert {"configMapRef": {"name": config}} in container["envFrom"]
        for var in container.get("env", []):
            assert "value" not in var, f"{workload['metadata']['name']}: {var['name']} has a value"
    for name in COMPONENTS:
        for workload in (
            named(manifests, "Deployment", name),
            named(manifests, "Job", f"{name}-migrate"),
        ):
            env = {
                v["name"]: v["valueFrom"]
                for v in workload["spec"]["template"]["spec"]["containers"][0]["env"]
            }
            assert env["DATABASE_URL"] == {
                "secretKeyRef": {"name": f"komar-db-{name}", "key": "DATABASE_URL"}
            }
    gateway_env = named(manifests, "Deployment", "gateway")["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert {
        "name": "KOMAR_ADMIN_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "komar-admin", "key": "KOMAR_ADMIN_SECRET"}},
    } in gateway_env
    # The gateway's key-encryption key (required), and the previous one during a rotation.
    assert {
        "name": "KOMAR_KEK",
        "valueFrom": {"secretKeyRef": {"name": "komar-kek", "key": "KOMAR_KEK"}},
    } in gateway_env
    assert {
        "name": "KOMAR_KEK_PREVIOUS",
        "valueFrom": {
            "secretKeyRef": {"name": "komar-kek", "key": "KOMAR_KEK_PREVIOUS", "optional": True}
        },
    } in gateway_env
    # No other component gets it.
    for workload, template in pod_templates(manifests):
        if workload["kind"] == "Deployment" and workload["metadata"]["name"] == "gateway":
            continue
        names = {v["name"] for v in template["spec"]["containers"][0].get("env", [])}
        assert not names & {"KOMAR_KEK", "KOMAR_KEK_PREVIOUS"}, workload["metadata"]["name"]


def test_the_configmap_points_at_the_services(manifests: list[Manifest]) -> None:
    data = named(manifests, "ConfigMap", "komar-config")["data"]
    for name in COMPONENTS:
        service = named(manifests, "Service", name)
        (port,) = service["spec"]["ports"]
        assert port["port"] == default_port(name)
        if name != "gateway":
            assert data[f"KOMAR_{name.upper()}_URL"] == f"http://{name}:{port['port']}"
    assert data["KOMAR_JWKS_URL"] == "http://gateway:8000/.well-known/jwks.json"
    # The dashboard reaches the gateway's Service, and its Service listens on its own port.
    gateway_port = named(manifests, "Service", "gateway")["spec"]["ports"][0]["port"]
    assert data["KOMAR_GATEWAY_URL"] == f"http://gateway:{gateway_port}"
    (port,) = named(manifests, "Service", DASHBOARD)["spec"]["ports"]
    assert port["port"] == default_port(DASHBOARD)
    assert data["KOMAR_DASHBOARD_SECURE_COOKIES"] == "true"
    assert data["NATS_URL"] == "nats://nats:4222"
    assert data["KOMAR_HOST"] == "0.0.0.0"
    assert not any(re.search("SECRET|PASSWORD|TOKEN", key) for key in data)


def test_no_secret_with_values_is_committed(manifests: list[Manifest]) -> None:
    committed = of_kind(manifests, "Secret")
    for path in K8S.rglob("*.y*ml"):
        docs = yaml.safe_load_all(path.read_text())
        committed += [d for d in docs if isinstance(d, dict) and d.get("kind") == "Secret"]
    for secret in committed:
        assert not secret.get("data"), secret["metadata"]["name"]
        assert not secret.get("stringData"), secret["metadata"]["name"]


def test_migrations_run_once_per_component_before_the_rollout(manifests: list[Manifest]) -> None:
    for name, (module, _) in COMPONENTS.items():
        job = named(manifests, "Job", f"{name}-migrate")
        pod = job["spec"]["template"]["spec"]
        assert pod["containers"][0]["args"] == [module, "migrate"]
        assert pod["restartPolicy"] == "Never"
        assert job["spec"]["backoffLimit"] >= 3
        annotations = job["metadata"]["annotations"]
        assert annotations["argocd.argoproj.io/hook"] == "Sync"
        assert int(annotations["argocd.argoproj.io/sync-wave"]) < 0
        assert annotations["kustomize.toolkit.fluxcd.io/force"] == "enabled"


def test_the_dashboard_has_no_database_no_broker_and_no_secret(manifests: list[Manifest]) -> None:
    deployment = named(manifests, "Deployment", DASHBOARD)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == DASHBOARD  # not "service": not their policy
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "env" not in container  # komar-config only: no DATABASE_URL, no secret
    assert not [
        job for job in of_kind(manifests, "Job") if job["metadata"]["name"].startswith(DASHBOARD)
    ]


# ------------------------------------------------------------------------------ scaling


def test_production_runs_every_component_at_least_twice(production: list[Manifest]) -> None:
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in of_kind(production, "HorizontalPodAutoscaler")
    }
    for name in COMPONENTS:
        deployment = named(production, "Deployment", name)
        hpa = hpas.get(name)
        floor = hpa["spec"]["minReplicas"] if hpa else deployment["spec"].get("replicas", 1)
        assert floor >= 2, name
        if hpa is not None:
            assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
            assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
            (metric,) = hpa["spec"]["metrics"]
            assert metric["resource"]["name"] == "cpu"
        budget = named(production, "PodDisruptionBudget", name)
        assert (
            budget["spec"]["selector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )


def test_the_dashboard_runs_as_one_pod_without_autoscaling(manifests: list[Manifest]) -> None:
    # Its sign-in sessions live in the process's memory: a second pod would not know them.
    assert named(manifests, "Deployment", DASHBOARD)["spec"]["replicas"] == 1
    hpas = of_kind(manifests, "HorizontalPodAutoscaler")
    assert DASHBOARD not in {h["spec"]["scaleTargetRef"]["name"] for h in hpas}
    # Its rollout never takes the only pod away before the next one is ready.
    strategy = named(manifests, "Deployment", DASHBOARD)["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_dev_runs_one_of_each_without_autoscaling() -> None:
    dev = _RENDERED.get("dev") or render("dev")
    assert not of_kind(dev, "HorizontalPodAutoscaler")
    assert all(d["spec"]["replicas"] == 1 for d in of_kind(dev, "Deployment"))


# ------------------------------------------------------------------------------ network


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def policies_for(manifests: list[Manifest], labels: dict[str, str], kind: str) -> list[Manifest]:
    """The NetworkPolicies of type `kind` (Ingress/Egress) that apply to pods with `labels`."""
    return [
        p
        for p in of_kind(manifests, "NetworkPolicy")
        if kind in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], labels)
    ]


def peers(policies: list[Manifest], direction: str) -> list[dict[str, Any]]:
    """Every peer of every rule; a rule without peers allows everyone and is returned as {}."""
    side = "from" if direction == "ingress" else "to"
    found: list[dict[str, Any]] = []
    for policy in policies:
        for rule in policy["spec"].get(direction, []):
            found.extend(rule.get(side) or [{}])
    return found


GATEWAY_LABELS = {"app.kubernetes.io/name": "gateway", "app.kubernetes.io/component": "gateway"}
INGRESS_NGINX = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
}
PROMETHEUS = {"kubernetes.io/metadata.name": "monitoring"}


def test_everything_is_denied_unless_allowed(manifests: list[Manifest]) -> None:
    deny = named(manifests, "NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny
    assert "egress" not in deny


@pytest.mark.parametrize("service", SERVICES)
def test_services_accept_only_the_gateway(manifests: list[Manifest], service: str) -> None:
    labels = named(manifests, "Deployment", service)["spec"]["template"]["metadata"]["labels"]
    allowed = peers(policies_for(manifests, labels, "Ingress"), "ingress")
    assert allowed, f"{service} has no ingress rule"
    for peer in allowed:
        from_gateway = (
            "namespaceSelector" not in peer
            and "podSelector" in peer
            and selects(peer["podSelector"], GATEWAY_LABELS)
        )
        from_prometheus = peer.get("namespaceSelector", {}).get("matchLabels") == PROMETHEUS
        assert from_gateway or from_prometheus, f"{service} admits {peer}"
        if from_gateway:
            other = named(manifests, "Deployment", "registry" if service != "registry" else "funds")
            assert not selects(peer["podSelector"], other["spec"]["template"]["metadata"]["labels"])
            dashboard = named(manifests, "Deployment", DASHBOARD)
            assert not selects(
                peer["podSelector"], dashboard["spec"]["template"]["metadata"]["labels"]
            )


@pytest.mark.parametrize("service", SERVICES)
def test_services_reach_only_postgres_nats_dns_and_the_jwks(
    manifests: list[Manifest], service: str
) -> None:
    labels = named(manifests, "Deployment", service)["spec"]["template"]["metadata"]["labels"]
    for peer in peers(policies_for(manifests, labels, "Egress"), "egress"):
        pod = peer.get("podSelector", {}).get("matchLabels", {})
        namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
        if service == "webhooks" and "ipBlock" in peer:
            continue  # its deliveries: test_webhooks_reach_public_addresses_on_443_only
        assert (
            pod == {"cnpg.io/cluster": "komar-db"}
            or pod.get("app.kubernetes.io/name") == "nats"
            or pod == GATEWAY_LABELS
            or namespace == {"kubernetes.io/metadata.name": "kube-system"}
        ), f"{service} may reach {peer}"


def test_webhooks_reach_public_addresses_on_443_only(manifests: list[Manifest]) -> None:
    policy = named(manifests, "NetworkPolicy", "webhooks-deliveries")["spec"]
    assert policy["policyTypes"] == ["Egress"]
    (rule,) = policy["egress"]
    assert rule["ports"] == [{"port": 443, "protocol": "TCP"}]
    blocks = {b["ipBlock"]["cidr"]: set(b["ipBlock"]["except"]) for b in rule["to"]}
    assert set(blocks) == {"0.0.0.0/0", "::/0"}
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"} <= (
        blocks["0.0.0.0/0"]
    )
    assert {"fc00::/7", "fe80::/10", "::1/128"} <= blocks["::/0"]
    for name in SERVICES:
        if name != "webhooks":
            labels = named(manifests, "Deployment", name)["spec"]["template"]["metadata"]
            assert not selects(policy["podSelector"], labels["labels"]), name


def test_the_gateway_is_reached_from_the_ingress_controller(manifests: list[Manifest]) -> None:
    labels = named(manifests, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    allowed = peers(policies_for(manifests, labels, "Ingress"), "ingress")
    assert INGRESS_NGINX in allowed
    assert {} not in allowed


def test_the_dashboard_reaches_only_the_gateway(manifests: list[Manifest]) -> None:
    labels = named(manifests, "Deployment", DASHBOARD)["spec"]["template"]["metadata"]["labels"]
    policies = policies_for(manifests, labels, "Egress")
    to_gateway = []
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to") or [{}]:
                namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
                if namespace == {"kubernetes.io/metadata.name": "kube-system"}:
                    assert {p["port"] for p in rule["ports"]} == {53}, rule  # DNS
                    continue
                # No ipBlock, no other namespace, no other pod: the gateway's pods alone.
                assert set(peer) == {"podSelector"}, f"the dashboard may reach {peer}"
                assert peer["podSelector"]["matchLabels"] == GATEWAY_LABELS, peer
                to_gateway.append(rule)
    assert to_gateway, "the dashboard cannot reach the gateway"
    for rule in to_gateway:
        assert rule["ports"] == [{"port": default_port("gateway"), "protocol": "TCP"}]
    # Not the services' policy (PostgreSQL, NATS), nor any other component's.
    assert {p["metadata"]["name"] for p in policies} == {"default-deny", "allow-dns", DASHBOARD}


def test_the_dashboard_is_reached_only_from_the_ingress_controller(
    manifests: list[Manifest],
) -> None:
    labels = named(manifests, "Deployment", DASHBOARD)["spec"]["template"]["metadata"]["labels"]
    assert peers(policies_for(manifests, labels, "Ingress"), "ingress") == [INGRESS_NGINX]


def test_the_gateway_accepts_the_dashboard(manifests: list[Manifest]) -> None:
    gateway = named(manifests, "Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    dashboard = named(manifests, "Deployment", DASHBOARD)["spec"]["template"]["metadata"]
    allowed = peers(policies_for(manifests, gateway, "Ingress"), "ingress")
    assert any(
        "namespaceSelector" not in peer
        and "podSelector" in peer
        and selects(peer["podSelector"], dashboard["labels"])
        for peer in allowed
    )


def test_the_ingress_serves_only_the_public_paths_over_tls(manifests: list[Manifest]) -> None:
    ingress = named(manifests, "Ingress", "gateway")["spec"]
    (tls,) = ingress["tls"]
    (rule,) = ingress["rules"]
    assert tls["secretName"]
    assert tls["hosts"] == [rule["host"]]
    paths = {p["path"] for p in rule["http"]["paths"]}
    assert {"/v1", "/oauth", "/.well-known"} <= paths
    assert "/" not in paths
    assert "/metrics" not in paths
    for p in rule["http"]["paths"]:
        assert p["backend"]["service"] == {"name": "gateway", "port": {"name": "http"}}


def test_the_dashboard_has_a_host_of_its_own_over_tls(manifests: list[Manifest]) -> None:
    ingress = named(manifests, "Ingress", DASHBOARD)
    (tls,) = ingress["spec"]["tls"]
    (rule,) = ingress["spec"]["rules"]
    assert tls["hosts"] == [rule["host"]]
    assert tls["secretName"] == "komar-dashboard-tls"
    # Its own host: its session cookie never goes to the API's host.
    (api,) = named(manifests, "Ingress", "gateway")["spec"]["rules"]
    assert rule["host"] != api["host"]
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/", "Prefix")]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": DASHBOARD, "port": {"name": "http"}}
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
    # Sticky: a browser stays on the pod that holds its session; the cookie only over HTTPS.
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert annotations["nginx.ingress.kubernetes.io/session-cookie-secure"] == "true"


def test_production_has_its_own_host_and_a_pinned_image(production: list[Manifest]) -> None:
    (rule,) = named(production, "Ingress", "gateway")["spec"]["rules"]
    assert rule["host"] != "komar.example.org"
    (rule,) = named(production, "Ingress", DASHBOARD)["spec"]["rules"]
    assert rule["host"] != "dashboard.komar.example.org"
    for _, template in pod_templates(production):
        image = template["spec"]["containers"][0]["image"]
        assert re.search(r":\d+\.\d+\.\d+$|@sha256:[0-9a-f]{64}$", image), image


# ------------------------------------------------------------------------------ PostgreSQL


def test_postgres_is_a_cloudnativepg_cluster(manifests: list[Manifest], overlay: str) -> None:
    cluster = named(manifests, "Cluster", "komar-db")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert spec["instances"] >= (3 if overlay == "production" else 1)
    assert spec["maxSyncReplicas"] < spec["instances"]
    assert spec["minSyncReplicas"] <= spec["maxSyncReplicas"]
    assert re.fullmatch(r"\d+(Gi|Ti)", spec["storage"]["size"])
    assert (
        set(spec["resources"]["requests"]) == set(spec["resources"]["limits"]) == {"cpu", "memory"}
    )
    initdb = spec["bootstrap"]["initdb"]
    assert initdb["database"] == "komar"
    assert initdb["owner"] == "komar"
    sql = "\n".join(initdb["postInitApplicationSQL"])
    assert "CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I" in sql
    assert "search_path" in sql
    for name in COMPONENTS:
        assert f"'{name}'" in sql, f"schema {name} is not created"
    roles = {r["name"]: r for r in spec["managed"]["roles"]}
    assert set(roles) == set(COMPONENTS)
    for name, role in roles.items():
        assert role["login"] is True
        assert role["ensure"] == "present"
        assert role["passwordSecret"] == {"name": f"komar-db-{name}"}


def test_production_postgres_is_backed_up(production: list[Manifest]) -> None:
    spec = named(production, "Cluster", "komar-db")["spec"]
    assert spec["instances"] >= 3
    store = spec["backup"]["barmanObjectStore"]
    assert store["destinationPath"].startswith("s3://")
    for key in ("accessKeyId", "secretAccessKey"):
        assert set(store["s3Credentials"][key]) == {"name", "key"}
    backup = named(production, "ScheduledBackup", "komar-db-nightly")
    assert backup["apiVersion"] == "postgresql.cnpg.io/v1"
    assert backup["spec"]["cluster"] == {"name": "komar-db"}
    assert len(backup["spec"]["schedule"].split()) == 6


# ------------------------------------------------------------------------------ NATS


def test_the_streams_job_creates_every_stream(manifests: list[Manifest], overlay: str) -> None:
    config = named(manifests, "ConfigMap", "nats-streams")
    streams = json.loads(config["data"]["streams.json"])["streams"]
    assert {s["name"]: s["subjects"] for s in streams} == STREAMS
    for stream in streams:
        assert stream["replicas"] == (3 if overlay == "production" else 1)
        assert stream["storage"] == "file"
        assert stream["duplicate_window_s"] == 600
    job = named(manifests, "Job", "nats-streams")["spec"]["template"]["spec"]
    assert job["containers"][0]["args"][0] == "deploy.k8s.streams"
    assert {"name": "streams", "configMap": {"name": config["metadata"]["name"]}} in job["volumes"]


def test_nats_values_make_a_three_node_jetstream_cluster() -> None:
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    jetstream = values["config"]["jetstream"]
    assert jetstream["enabled"] is True
    assert jetstream["fileStore"]["enabled"] is True
    assert jetstream["fileStore"]["pvc"]["enabled"] is True
    assert re.fullmatch(r"\d+Gi", jetstream["fileStore"]["pvc"]["size"])
    resources = values["container"]["merge"]["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    assert values["podDisruptionBudget"]["enabled"] is True


# ------------------------------------------------------------------------------ stream set-up


def run_streams(url: str, spec: Path) -> subprocess.CompletedProcess[str]:
    """`python -m deploy.k8s.streams <spec>` against `url`, as the Job runs it."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "deploy.k8s.streams",
            str(spec),
            "--nats-url",
            url,
            "--timeout",
            "10",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stream_configs(url: str) -> dict[str, Any]:
    """name -> StreamConfig of every stream on the server."""

    async def read() -> dict[str, Any]:
        nc = await nats.connect(url)
        try:
            return {str(i.config.name): i.config for i in await nc.jetstream().streams_info()}
        finally:
            await nc.close()

    return asyncio.run(read())


@pytest.fixture
def single_nats(tmp_path: Path) -> Iterator[str]:
    """A NATS server of this test's own."""
    server = EmbeddedNats(tmp_path / "nats", port=free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def test_streams_are_created_once_and_kept_in_line(single_nats: str, tmp_path: Path) -> None:
    dev = K8S / "overlays" / "dev" / "streams.json"
    first = run_streams(single_nats, dev)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count('"stream.created"') == len(STREAMS)
    configs = stream_configs(single_nats)
    assert {name: c.subjects for name, c in configs.items()} == STREAMS
    assert all(c.duplicate_window == 600 and c.storage == "file" for c in configs.values())

    again = run_streams(single_nats, dev)
    assert again.returncode == 0
    assert again.stdout.count('"stream.unchanged"') == len(STREAMS)

    changed = json.loads(dev.read_text())
    changed["streams"][0]["duplicate_window_s"] = 120
    spec = tmp_path / "streams.json"
    spec.write_text(json.dumps(changed))
    updated = run_streams(single_nats, spec)
    assert updated.returncode == 0
    assert '"stream.updated"' in updated.stdout
    assert stream_configs(single_nats)["REGISTRY"].duplicate_window == 120


def test_streams_refuse_to_change_storage_in_place(single_nats: str) -> None:
    async def make_memory_stream() -> None:
        nc = await nats.connect(single_nats)
        try:
            await nc.jetstream().add_stream(
                StreamConfig(name="FUNDS", subjects=["funds.>"], storage=StorageType.MEMORY)
            )
        finally:
            await nc.close()

    asyncio.run(make_memory_stream())
    result = run_streams(single_nats, K8S / "overlays" / "dev" / "streams.json")
    assert result.returncode == 1
    assert '"stream.storage_mismatch"' in result.stdout
    assert StorageType(stream_configs(single_nats)["FUNDS"].storage) == StorageType.MEMORY


def test_streams_fail_loudly_when_the_cluster_is_too_small(single_nats: str) -> None:
    result = run_streams(single_nats, K8S / "nats" / "streams.json")
    assert result.returncode == 1
    assert '"stream.failed"' in result.stdout


class NatsCluster:
    """Three nats-server processes with JetStream, clustered over loopback routes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.client_ports = [free_port() for _ in range(3)]
        self.route_ports = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The client URL of the first server."""
        return f"nats://127.0.0.1:{self.client_ports[0]}"

    def start(self) -> None:
        """Start the three servers."""
        routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.route_ports)
        for i in range(3):
            conf = self.root / f"n{i}.conf"
            conf.write_text(
                f"server_name: n{i}\nlisten: 127.0.0.1:{self.client_ports[i]}\n"
                f"jetstream {{ store_dir: {self.root / f'n{i}'} }}\n"
                f"cluster {{ name: komar, listen: 127.0.0.1:{self.route_ports[i]}, "
                f"routes: [{routes}] }}\n"
            )
            with open(self.root / f"n{i}.log", "wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [str(nats_server_binary()), "-c", str(conf)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def stop(self) -> None:
        """Stop the three servers."""
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A 3-node JetStream cluster of this test's own."""
    cluster = NatsCluster(tmp_path)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def ensure_streams_on(cluster: NatsCluster) -> subprocess.CompletedProcess[str]:
    """Run the production stream set-up, retrying while the cluster elects its leader."""
    deadline = time.monotonic() + 60
    while True:
        result = run_streams(cluster.url, K8S / "nats" / "streams.json")
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(1)


def test_production_streams_get_three_replicas_on_a_cluster(nats_cluster: NatsCluster) -> None:
    result = ensure_streams_on(nats_cluster)
    assert result.returncode == 0, result.stdout + result.stderr
    configs = stream_configs(nats_cluster.url)
    assert {name: c.num_replicas for name, c in configs.items()} == dict.fromkeys(STREAMS, 3)


def test_a_starting_service_keeps_the_streams_replicas(nats_cluster: NatsCluster) -> None:
    from libs.common.events.bus import EventBus

    assert ensure_streams_on(nats_cluster).returncode == 0

    async def start_a_service() -> None:
        bus = EventBus(nats_cluster.url, "registry", {"REGISTRY": ["registry.>"]})
        bus.start()
        try:
            await bus.wait_ready(30)
        finally:
            await bus.close()

    asyncio.run(start_a_service())
    replicas = {name: c.num_replicas for name, c in stream_configs(nats_cluster.url).items()}
    if replicas["REGISTRY"] != 3 or replicas["DEADLETTER"] != 3:
        # Known defect, outside deploy/: libs/common/events/bus.py ensure_stream() answers
        # "stream name already in use" with update_stream() of its own config, which carries
        # no replica count, so every service start scales the 3-replica streams back to 1.
        # This test passes on its own once ensure_stream leaves existing streams alone.
        pytest.xfail(f"a starting service rescaled the streams: {replicas}")
    assert replicas == dict.fromkeys(STREAMS, 3)
