"""Run the deploy.local runner with tiny stand-in components (for tests/deploy)."""

from __future__ import annotations

import os
import secrets
import sys
import types
from pathlib import Path

from deploy.local import __main__ as runner


def _load_or_create_admin_secret(data_dir: Path) -> tuple[str, bool]:
    """Stand-in for libs.common.settings.load_or_create_admin_secret."""
    if os.environ.get("KOMAR_ADMIN_SECRET"):
        return os.environ["KOMAR_ADMIN_SECRET"], False
    path = data_dir / "admin-secret"
    if path.exists():
        return path.read_text().strip(), False
    secret = secrets.token_urlsafe(32)
    path.write_text(secret + "\n")
    return secret, True


def _install_settings_stand_in() -> None:
    """Use a stand-in admin-secret loader, so this test does not depend on libs/."""
    for name in ("libs", "libs.common", "libs.common.settings"):
        module = types.ModuleType(name)
        module.__path__ = []  # type: ignore[attr-defined]
        sys.modules[name] = module
    sys.modules["libs.common.settings"].load_or_create_admin_secret = (  # type: ignore[attr-defined]
        _load_or_create_admin_secret
    )


if __name__ == "__main__":
    _install_settings_stand_in()
    runner.COMPONENTS[:] = [
        ("gateway", "tests.deploy.fake_gateway", "KOMAR_GATEWAY_PORT", 8000),
        ("registry", "tests.deploy.fake_registry", "KOMAR_REGISTRY_PORT", 8101),
    ]
    sys.exit(runner.main())
