"""The gateway's pure rules."""

from __future__ import annotations

import pytest

from gateway import domain
from gateway.openapi import merge
from gateway.runtime import TrustedProxies


def test_secret_hash_round_trip() -> None:
    stored = domain.hash_secret("s3cret-value")
    assert stored.startswith("scrypt$")
    assert "s3cret-value" not in stored
    assert domain.verify_secret("s3cret-value", stored)
    assert not domain.verify_secret("s3cret-valuE", stored)
    assert not domain.verify_secret("s3cret-value", "garbage")
    assert domain.hash_secret("same") != domain.hash_secret("same")  # salted


def test_dummy_hash_matches_nothing() -> None:
    assert not domain.verify_secret("", domain.dummy_hash())


def test_granted_scopes() -> None:
    held = ["registry:read", "registry:write", "funds:read"]
    assert domain.granted_scopes(held, None) == sorted(held)
    assert domain.granted_scopes(held, "  ") == sorted(held)
    assert domain.granted_scopes(held, "registry:read") == ["registry:read"]
    with pytest.raises(domain.RuleViolation):
        domain.granted_scopes(held, "registry:read admin")
    with pytest.raises(domain.RuleViolation):
        domain.granted_scopes(held, "made:up")


def test_admin_scope_only_for_government() -> None:
    domain.check_principal("government", ["admin"])
    with pytest.raises(domain.RuleViolation):
        domain.check_principal("partner", ["registry:read", "admin"])


def test_token_bucket() -> None:
    limiter = domain.RateLimiter(rate=2.0, burst=3)
    assert [limiter.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a", 0.0)
    assert wait == pytest.approx(0.5)
    assert limiter.take("b", 0.0) == 0.0  # its own bucket
    assert limiter.take("a", 0.5) == 0.0  # refilled one token
    assert limiter.take("a", 0.5) > 0
    assert limiter.take("a", 100.0) == 0.0  # capped at the burst, not 200 tokens
    assert limiter.take("a", 100.0) == 0.0
    assert limiter.take("a", 100.0) == 0.0
    assert limiter.take("a", 100.0) > 0
    # A principal's own rate and burst.
    assert limiter.take("slow", 0.0, 0.1, 1.0) == 0.0
    assert limiter.take("slow", 0.0, 0.1, 1.0) == pytest.approx(10.0)
    assert limiter.forget_idle(1000.0) == 3


def test_a_refunded_token_can_be_spent_again_but_not_past_the_burst() -> None:
    limiter = domain.RateLimiter(rate=1.0, burst=2)
    assert limiter.take("a", 0.0) == limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) > 0
    limiter.refund("a")  # an attempt that turned out well
    assert limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) > 0
    for _ in range(5):
        limiter.refund("a")
    assert [limiter.take("a", 0.0) == 0.0 for _ in range(3)] == [True, True, False]
    limiter.refund("nobody")  # no bucket, nothing to give back
    assert limiter.peek("nobody", 0.0) == 0.0


def test_retry_after_is_whole_seconds() -> None:
    assert domain.retry_after(0.01) == "1"
    assert domain.retry_after(1.2) == "2"


def test_burst_scales_with_a_clients_rate() -> None:
    assert domain.burst_for(1.0, 100.0, 200) == 2.0
    assert domain.burst_for(0.1, 100.0, 200) == 1.0


def test_trusted_proxies() -> None:
    none = TrustedProxies([])
    assert none.client_address("203.0.113.1", "1.2.3.4") == "203.0.113.1"
    lb = TrustedProxies(["10.0.0.0/8", "192.168.1.1"])
    assert lb.client_address("10.0.0.5", "198.51.100.7") == "198.51.100.7"
    assert lb.client_address("10.0.0.5", "6.6.6.6, 198.51.100.7, 192.168.1.1") == "198.51.100.7"
    assert lb.client_address("203.0.113.1", "1.2.3.4") == "203.0.113.1"
    assert lb.client_address("10.0.0.5", None) == "10.0.0.5"


def test_merge_renames_clashing_components() -> None:
    own = {
        "openapi": "3.1.0",
        "info": {"title": "gw", "version": "1"},
        "paths": {"/oauth/token": {}},
        "components": {"schemas": {"Page": {"type": "object", "title": "gateway page"}}},
    }
    service = {
        "paths": {
            "/v1/registry/children": {
                "get": {"responses": {"200": {"$ref": "#/components/schemas/Page"}}}
            },
            "/healthz": {"get": {}},
        },
        "components": {
            "schemas": {
                "Page": {"type": "object", "title": "registry page"},
                "PageItem": {"type": "string"},
            }
        },
    }
    doc = merge(own, {"registry": service})
    schemas = doc["components"]["schemas"]
    assert schemas["Page"]["title"] == "gateway page"
    assert schemas["registry.Page"]["title"] == "registry page"
    assert schemas["PageItem"] == {"type": "string"}
    ref = doc["paths"]["/v1/registry/children"]["get"]["responses"]["200"]["$ref"]
    assert ref == "#/components/schemas/registry.Page"
    assert "/healthz" not in doc["paths"]
    assert doc["info"]["title"] == "Komar API"
