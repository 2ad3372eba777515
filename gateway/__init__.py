"""The Komar gateway: token issuing, key rotation, routing, rate limits, merged OpenAPI."""
