"""The node agent `meshd`: the I/O edges around the pure core in `meshd`."""
