"""The funds service."""

SERVICE = "funds"
