"""The registry service."""

SERVICE = "registry"
