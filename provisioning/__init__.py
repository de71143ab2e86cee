"""Community and node plans, keys, addresses, OpenWrt rendering and bundles.

`provisioning.keys` is also used on the router, so this package's `__init__` imports nothing.
"""
