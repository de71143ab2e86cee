"""Glue between a verified mesh and the core's analyses (`meshd.topology`, `meshd.graph`,
`meshd.contrib`, `meshd.audit`): archive baselines and windows (`pipeline`), the views' column
tables (`views`), path diagnosis, active probes and the exports other tools read."""
