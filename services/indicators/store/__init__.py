"""Every SQL statement of the indicators service, and nothing else: `bookkeeping` (generations,
locks, the rounding key, the inbox) and `counting` (versions and aggregate cells)."""
