"""`make user`: create a dashboard user on the running platform, through the admin API.

    make user ARGS="--username sokha --name 'Sokha Chan' --role commune --area 120101"

The password is asked for twice at the terminal (never on the command line, where the
shell's history would keep it); a script may pass it in KOMAR_NEW_USER_PASSWORD instead.
The bootstrap admin's secret is read from KOMAR_ADMIN_SECRET or `var/admin-secret`, the
gateway from KOMAR_GATEWAY_URL or 127.0.0.1:KOMAR_GATEWAY_PORT. A role is a set of
scopes for a kind of staff; --scope replaces it with exactly the scopes given.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

import httpx

ROLES: dict[str, tuple[str, list[str]]] = {
    # role: (organisation prefix, scopes)
    "commune": (
        "ccwc",
        [
            "registry:read",
            "registry:write",
            "referrals:read",
            "referrals:write",
            "funds:read",
            "funds:request",
            "casework:read",
            "casework:write",
            "indicators:read",
        ],
    ),
    "district": (
        "dosvy",
        [
            "registry:read",
            "registry:write",
            "referrals:read",
            "referrals:write",
            "funds:read",
            "funds:request",
            "funds:approve",
            "funds:disburse",
            "casework:read",
            "casework:write",
            "indicators:read",
        ],
    ),
    "province": (
        "dosvy",
        [
            "registry:read",
            "referrals:read",
            "funds:read",
            "funds:approve",
            "funds:manage",
            "casework:read",
            "indicators:read",
        ],
    ),
    "provider": ("ngo", ["registry:read", "referrals:read", "referrals:respond"]),
    "ministry": ("mosvy", ["indicators:read", "indicators:read:detail"]),
}


def _gateway() -> str:
    url = os.environ.get("KOMAR_GATEWAY_URL")
    if url:
        return url.rstrip("/")
    return f"http://127.0.0.1:{os.environ.get('KOMAR_GATEWAY_PORT', '8000')}"


def _admin_secret() -> str:
    secret = os.environ.get("KOMAR_ADMIN_SECRET")
    if secret:
        return secret
    path = Path(os.environ.get("KOMAR_DATA_DIR", "var")) / "admin-secret"
    try:
        return path.read_text().strip()
    except OSError:
        raise SystemExit(
            f"no admin secret: set KOMAR_ADMIN_SECRET or start `make run` ({path})"
        ) from None


def _password() -> str:
    given = os.environ.get("KOMAR_NEW_USER_PASSWORD")
    if given:
        return given
    if not sys.stdin.isatty():
        raise SystemExit("no terminal to ask for the password: set KOMAR_NEW_USER_PASSWORD")
    first = getpass.getpass("Password for the new user: ")
    if getpass.getpass("The same password again: ") != first:
        raise SystemExit("the two passwords differ; nothing was created")
    return first


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make user", description=__doc__.split("\n\n")[0])
    parser.add_argument("--username", required=True)
    parser.add_argument("--name", required=True, help="the person's name, shown when signed in")
    parser.add_argument("--role", choices=sorted(ROLES), default="commune")
    parser.add_argument(
        "--area", action="append", required=True, help="a gazetteer code (repeatable; KH = all)"
    )
    parser.add_argument("--org", help="the organisation (default: the role's prefix-area)")
    parser.add_argument("--org-type", choices=["government", "partner"], default=None)
    parser.add_argument("--scope", action="append", help="exactly these scopes (repeatable)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    prefix, scopes = ROLES[args.role]
    org = args.org or f"{prefix}-{args.area[0]}"
    org_type = args.org_type or ("partner" if args.role == "provider" else "government")
    gateway = _gateway()
    with httpx.Client(base_url=gateway, timeout=30) as client:
        r = client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "admin",
                "client_secret": _admin_secret(),
            },
        )
        if r.status_code != 200:
            print(f"the gateway refused the admin secret ({r.status_code})", file=sys.stderr)
            return 1
        admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
        r = client.post(
            "/v1/admin/users",
            headers=admin,
            json={
                "username": args.username,
                "password": _password(),
                "name": args.name,
                "org": org,
                "org_type": org_type,
                "scopes": args.scope or scopes,
                "areas": args.area,
            },
        )
    if r.status_code != 201:
        body = r.json() if r.headers.get("content-type", "").endswith("json") else {}
        print(f"not created: {body.get('detail') or r.text}", file=sys.stderr)
        return 1
    user = r.json()
    print(f"created {user['username']} ({user['user_id']}) of {user['org']}")
    print(f"  scopes: {' '.join(user['scopes'])}")
    print(f"  areas:  {' '.join(user['areas'])}")
    dashboard = os.environ.get("KOMAR_DASHBOARD_PORT", "8080")
    print(f"They sign in at http://127.0.0.1:{dashboard}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
