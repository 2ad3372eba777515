"""The casework service: community support workers, assignments, case plans, visits and
reintegration follow-ups (SPEC §12, docs/api-guide.md#casework)."""

SERVICE = "casework"
