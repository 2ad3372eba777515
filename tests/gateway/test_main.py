"""`python -m gateway`: migrate and serve on a fresh database, generate the admin secret, stop;
refuse to serve without a key-encryption key."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from deploy.local.infra import create_database, drop_database, free_port


async def test_serve_generates_the_admin_secret_and_stops_cleanly(
    pg_url: str, repo_root: Path, tmp_path: Path
) -> None:
    name = f"komar_gw_main_{secrets.token_hex(4)}"
    url = await asyncio.to_thread(create_database, pg_url, name)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KOMAR_")}
    env.update(
        {
            "DATABASE_URL": url,
            "KOMAR_GATEWAY_PORT": str(port),
            "KOMAR_DATA_DIR": str(tmp_path / "var"),
            "KOMAR_LOG_JSON": "true",
        }
    )
    log_path = tmp_path / "gateway.log"
    try:
        migrate = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway", "migrate"],
            cwd=repo_root,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr
        # Without a key-encryption key the gateway refuses to serve, and says why.
        refused = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway"],
            cwd=repo_root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert refused.returncode == 2
        assert "KOMAR_KEK is not set" in refused.stderr
        kek = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway", "kek"],
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        env["KOMAR_KEK"] = kek.stdout.strip()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway"], cwd=repo_root, env=env, stdout=log, stderr=log
            )
        try:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                for _ in range(150):
                    try:
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert proc.poll() is None, log_path.read_text()
                    await asyncio.sleep(0.1)
                secret = (tmp_path / "var" / "admin-secret").read_text().strip()
                assert oct((tmp_path / "var" / "admin-secret").stat().st_mode & 0o777) == "0o600"
                token = await http.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials"},
                    auth=("admin", secret),
                )
                assert token.status_code == 200, token.text
                assert (await http.get("/.well-known/jwks.json")).json()["keys"]
                # A client-sent X-Forwarded-For is not believed (no proxy_headers), nor does
                # it escape the throttle of failures per client id.
                throttled = None
                for _ in range(25):
                    throttled = await http.post(
                        "/oauth/token",
                        data={"grant_type": "client_credentials"},
                        auth=("admin", "wrong"),
                        headers={"X-Forwarded-For": f"192.0.2.{secrets.randbelow(250)}"},
                    )
                assert throttled is not None
                assert throttled.status_code == 429
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 20)
        log_text = log_path.read_text()
        # uvicorn re-raises the SIGTERM it caught once it has shut down gracefully.
        assert code in (0, -signal.SIGTERM), log_text
        assert "admin.secret.created" in log_text
        assert secret not in log_text
        assert env["KOMAR_KEK"] not in log_text
        assert "gateway.stopped" in log_text
    finally:
        await asyncio.to_thread(drop_database, pg_url, name)
