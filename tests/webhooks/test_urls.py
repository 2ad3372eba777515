"""Where deliveries may go: the URL rules and the address checks (no server-side request
forgery), with the resolver stood in for, so a name can resolve anywhere."""

from __future__ import annotations

import ipaddress

import pytest

from services.webhooks import urls
from services.webhooks.urls import UrlRefused


def resolving_to(*addresses: str) -> urls.Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


async def not_resolving(host: str, port: int) -> list[str]:
    raise OSError("no such host")


async def refused(url: str, *, allow_loopback: bool = False, resolver: urls.Resolver) -> str:
    with pytest.raises(UrlRefused) as caught:
        await urls.check(url, allow_loopback=allow_loopback, resolver=resolver)
    return str(caught.value)


PUBLIC = resolving_to("93.184.215.14")


async def test_a_public_https_url_is_allowed_and_connects_to_the_checked_address() -> None:
    target, address = await urls.check(
        "https://hooks.example.org/komar?x=1", allow_loopback=False, resolver=PUBLIC
    )
    assert address == "93.184.215.14"
    assert target.url_at(address) == "https://93.184.215.14:443/komar?x=1"
    assert target.host_header == "hooks.example.org"
    target, _ = await urls.check(
        "https://Hooks.Example.org:8443", allow_loopback=False, resolver=PUBLIC
    )
    assert (target.host, target.port, target.rest) == ("hooks.example.org", 8443, "/")
    assert target.host_header == "hooks.example.org:8443"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.org/komar", "https://"),
        ("ftp://hooks.example.org/", "https://"),
        ("https://user:pw@hooks.example.org/", "user information"),
        ("https://user@hooks.example.org/", "user information"),
        ("https:///path", "host"),
        ("https://hooks.example.org:99999/", "valid URL"),
        ("https://hooks.example.org/a b", "white space"),
        ("https://hooks.example.org/#frag", "fragment"),
        ("https://" + "a" * 1990 + ".org/", "2,000 characters"),
    ],
)
async def test_the_form_of_a_url_is_checked(url: str, why: str) -> None:
    assert why in await refused(url, resolver=PUBLIC)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://10.0.0.1/", "private"),
        ("https://172.16.5.4/", "private"),
        ("https://192.168.1.1/", "private"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://127.0.0.1/", "loopback"),
        ("https://0.0.0.0/", "unspecified"),
        ("https://224.0.0.1/", "multicast"),
        ("https://100.64.0.1/", "not a public"),
        ("https://[::1]/", "loopback"),
        ("https://[::]/", "unspecified"),
        ("https://[fe80::1]/", "link-local"),
        ("https://[fd00::1]/", "private"),
        ("https://[::ffff:10.0.0.1]/", "private"),
        ("https://[::ffff:169.254.169.254]/", "link-local"),
        ("https://[2002:a00:1::]/", "private"),  # 6to4 of 10.0.0.1
        ("https://[64:ff9b::a00:1]/", "private"),  # NAT64 of 10.0.0.1
        ("https://[ff02::1]/", "multicast"),
    ],
)
async def test_an_address_that_is_not_public_is_refused(url: str, why: str) -> None:
    assert why in await refused(url, resolver=PUBLIC)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("fe80::1%eth0", "link-local"),
    ],
)
async def test_a_name_resolving_to_an_address_that_is_not_public_is_refused(
    address: str, why: str
) -> None:
    message = await refused("https://evil.example.org/", resolver=resolving_to(address))
    assert "resolve" in message
    assert why in message


async def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    message = await refused(
        "https://mixed.example.org/", resolver=resolving_to("93.184.215.14", "10.0.0.7")
    )
    assert "private" in message


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    assert "does not resolve" in await refused("https://nowhere.invalid/", resolver=not_resolving)


async def test_the_loopback_flag_allows_loopback_and_plain_http_to_it_only() -> None:
    for url in ("http://127.0.0.1:8999/hook", "http://localhost:8999/", "http://[::1]:8999/"):
        target, address = await urls.check(
            url, allow_loopback=True, resolver=resolving_to("127.0.0.1")
        )
        assert ipaddress.ip_address(address).is_loopback
        assert target.scheme == "http"
    # without the flag, neither a loopback literal nor a name resolving to one
    assert "https://" in await refused("http://127.0.0.1:8999/hook", resolver=PUBLIC)
    assert "loopback" in await refused("https://127.0.0.1:8999/hook", resolver=PUBLIC)
    message = await refused("https://localhost/", resolver=resolving_to("127.0.0.1"))
    assert "loopback" in message
    # with it, still no private addresses, and http only to loopback hosts
    assert "private" in await refused("https://10.0.0.1/", allow_loopback=True, resolver=PUBLIC)
    assert "https://" in await refused(
        "http://hooks.example.org/", allow_loopback=True, resolver=PUBLIC
    )


def test_the_url_to_connect_to_names_the_checked_address_and_keeps_the_path() -> None:
    target = urls.parse("https://hooks.example.org/a/b?c=d", allow_loopback=False)
    assert target.url_at("2001:db8::5") == "https://[2001:db8::5]:443/a/b?c=d"
    assert urls.refusal(ipaddress.ip_address("2001:db8::5"), allow_loopback=False) is not None
    assert urls.refusal(ipaddress.ip_address("8.8.8.8"), allow_loopback=False) is None
    assert urls.refusal(ipaddress.ip_address("2606:4700::1111"), allow_loopback=False) is None
