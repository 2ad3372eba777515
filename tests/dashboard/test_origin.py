"""What the dashboard tells the gateway of whom a call serves (`client.Origin`): its request
id, and the browser's address after the hops of any proxy before the dashboard."""

from __future__ import annotations

from dashboard.client import MAX_FORWARDED_FOR, Origin


def test_the_peer_follows_the_hops_before_it() -> None:
    assert Origin.of("r1", "10.1.2.3", []).headers() == {
        "X-Request-ID": "r1",
        "X-Forwarded-For": "10.1.2.3",
    }
    # Hops in one header or in several, spaces and empty hops as sent.
    origin = Origin.of("r2", "10.1.2.3", ["203.0.113.7 , 198.51.100.1", ",192.0.2.9"])
    assert origin.forwarded_for == "203.0.113.7, 198.51.100.1, 192.0.2.9, 10.1.2.3"


def test_no_address_known_sends_none() -> None:
    assert Origin.of("r3", "", []).headers() == {"X-Request-ID": "r3"}


def test_a_long_chain_keeps_its_rightmost_whole_hops() -> None:
    forged = ", ".join(f"192.0.2.{i % 250}" for i in range(500))
    origin = Origin.of("r4", "10.1.2.3", [forged])
    assert len(origin.forwarded_for) <= MAX_FORWARDED_FOR
    assert origin.forwarded_for.endswith("192.0.2.249, 10.1.2.3")
    hops = origin.forwarded_for.split(", ")
    assert all(h.startswith("192.0.2.") or h == "10.1.2.3" for h in hops)
    assert all(len(h.split(".")) == 4 for h in hops)
