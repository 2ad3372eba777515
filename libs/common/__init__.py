"""What every Komar service shares; nothing service-specific."""
