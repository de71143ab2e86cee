"""One module per top-level command; `cli.main` imports them only when they are used."""
