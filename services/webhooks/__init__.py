"""The webhooks service."""

SERVICE = "webhooks"
