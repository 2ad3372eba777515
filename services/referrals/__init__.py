"""The referrals service."""

SERVICE = "referrals"
