"""Development harness shared by tests/ and bench/ (never shipped to a router)."""
