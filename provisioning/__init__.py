"""Community and node plans, keys, addresses, OpenWrt rendering and bundles.

Admin side only: the router ships meshd and node_agent (see openwrt/meshd/Makefile).
"""
