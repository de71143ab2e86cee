"""Glue between a verified mesh and the core's analyses (`meshd.topology`, `meshd.contrib`,
`meshd.audit`): archive baselines, windows, and the JSON shapes the commands print."""
