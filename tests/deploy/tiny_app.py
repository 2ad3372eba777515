"""A tiny ASGI app run by uvicorn as a real process, for the supervisor and runner tests.

`python -m tests.deploy.tiny_app [serve|migrate|boom|log]` serves on $TINY_PORT; the
fake_gateway and fake_registry modules serve the same app on the runner's port variables.
`log` writes log lines as a real component does (libs.common.logging), then exits.
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


def log() -> None:
    """Log as a component does: a request line, a line with personal data (redacted), a
    failure with its traceback, and a line that is not JSON."""
    from libs.common.logging import configure_logging, get_logger

    configure_logging("tiny")
    logger = get_logger()
    logger.info("http.request", method="POST", route="/v1/tiny", status=201, ms=4.1)
    logger.info("child.registered", given_name="Sokha", family_name="Chan", village="12010101")
    try:
        raise ValueError("Sokha Chan, born 2015-04-12")
    except ValueError:
        logger.error("request.failed", exc_info=True)
    print("Started server process [1]", file=sys.stderr, flush=True)


def serve(port_var: str) -> None:
    """Run the command in argv[1] (serve by default) with the port from `port_var`."""
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if command == "boom":
        print("boom: refusing to start", flush=True)
        sys.exit(1)
    if command == "migrate":
        asyncio.run(migrate())
        return
    if command == "log":
        log()
        return
    port = int(os.environ[port_var])
    uvicorn.run(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")


if __name__ == "__main__":
    serve("TINY_PORT")
