"""The indicators service."""

SERVICE = "indicators"
