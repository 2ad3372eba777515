"""The casework service: community support workers, assignments, case plans, visits and
reintegration follow-ups (docs/api-guide.md#casework)."""

SERVICE = "casework"
