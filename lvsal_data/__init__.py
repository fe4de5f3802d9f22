"""lvsal-data."""
