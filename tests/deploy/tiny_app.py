"""A tiny ASGI app run by uvicorn as a real process, for the supervisor and runner tests.

`python -m tests.deploy.tiny_app [serve|migrate|boom]` serves on $TINY_PORT; the
fake_gateway and fake_registry modules serve the same app on the runner's port variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Scope = dict[str, Any]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer /readyz, /pid, /env; /crash exits the process with code 3."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/crash":
        os._exit(3)
    if path == "/readyz":
        status, body = 200, b"ready"
    elif path == "/pid":
        status, body = 200, str(os.getpid()).encode()
    elif path == "/env":
        env = {k: v for k, v in os.environ.items() if k.startswith(("KOMAR_", "DATABASE", "NATS"))}
        status, body = 200, json.dumps(env).encode()
    else:
        status, body = 404, b"not found"
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def migrate() -> None:
    """Prove DATABASE_URL works: record one run in a table that must survive restarts."""
    import asyncpg

    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS tiny_runs (at timestamptz DEFAULT now())")
        await conn.execute("INSERT INTO tiny_runs DEFAULT VALUES")
    finally:
        await conn.close()
    print("migrated", flush=True)


def serve(port_var: str) -> None:
    """Run the command in argv[1] (serve by default) with the port from `port_var`."""
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if command == "boom":
        print("boom: refusing to start", flush=True)
        sys.exit(1)
    if command == "migrate":
        asyncio.run(migrate())
        return
    port = int(os.environ[port_var])
    uvicorn.run(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")


if __name__ == "__main__":
    serve("TINY_PORT")
