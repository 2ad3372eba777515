"""The dashboard's pages, one module per part; each has a `router`."""

from fastapi import APIRouter

from dashboard.pages import auth, casework, children, funds, indicators, overview, referrals, report

ROUTERS: list[APIRouter] = [auth.router, overview.router, children.router]
ROUTERS += [indicators.router, report.router]
ROUTERS += [referrals.router, funds.router, casework.router]
