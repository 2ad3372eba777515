"""The staff web application: server-rendered pages in Khmer and English over the gateway.

It calls nothing but the gateway, with the signed-in user's own token: it shows exactly
what that token may see, by the API's rules, never rules of its own.
"""

SERVICE = "dashboard"
