"""The dashboard's pages, one module per part; each has a `router`."""

from fastapi import APIRouter

from dashboard.pages import auth, children, overview

ROUTERS: list[APIRouter] = [auth.router, overview.router, children.router]
