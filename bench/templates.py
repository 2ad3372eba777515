"""The templates of a workflow step (bench/loadgen.py): `path`, `body` and `auth` name values
of the iteration's context as `{name}` or `{step.field}`."""

from __future__ import annotations

import re
from typing import Any

_TEMPLATE_NAME = re.compile(r"\{([A-Za-z_][\w.]*)\}")


class TemplateError(Exception):
    """A template's `{name}` names nothing in the iteration's context."""


def _lookup(context: dict[str, Any], name: str) -> Any:
    value: Any = context
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise TemplateError(f"{{{name}}}: no such value")
        value = value[part]
    return value


def render(template: Any, context: dict[str, Any]) -> Any:
    """Fill a template (a string, or JSON data holding strings) from `context`."""
    if isinstance(template, str):
        whole = _TEMPLATE_NAME.fullmatch(template)
        if whole:
            return _lookup(context, whole.group(1))
        return _TEMPLATE_NAME.sub(lambda m: str(_lookup(context, m.group(1))), template)
    if isinstance(template, dict):
        return {k: render(v, context) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, context) for v in template]
    return template
