#!/bin/sh
# shellcheck shell=sh
# meshd-apply [DIR]: merge the configuration rendered by `mutualmesh node add` (default
# /etc/meshd/uci) into this router's UCI config. Safe to run again: the result is the same.
#
# - firewall, dhcp, babeld, dropbear: ours entirely, replaced.
# - network: our named sections replace the board's sections of the same name; the board's
#   devices (br-lan ports, wan) stay as they are.
# - wireless: every wifi-iface is removed (OpenWrt's default is an open AP); our sections name
#   radios mm_radio_<band>, which are mapped onto the radio reporting that band, so the board's
#   radio path and type are kept.
set -eu

SRC=${1:-/etc/meshd/uci}
TMP=$(mktemp)
trap 'rm -f "$TMP"' EXIT

log() {
	logger -t meshd-apply "$*" 2>/dev/null || true
	echo "meshd-apply: $*" >&2
}

sections_of() {
	# sections_of CONFDIR PACKAGE: the named sections of a package.
	uci -q -c "$1" show "$2" | sed -n "s/^$2\.\([A-Za-z0-9_]*\)=.*/\1/p"
}

radio_for_band() {
	for radio in $(uci -q show wireless | sed -n 's/^wireless\.\([A-Za-z0-9_]*\)=wifi-device$/\1/p'); do
		case "$radio" in mm_radio_*) continue ;; esac
		if [ "$(uci -q get "wireless.$radio.band")" = "$1" ]; then
			echo "$radio"
			return 0
		fi
	done
	return 1
}

[ -d "$SRC" ] || { log "no rendered configuration in $SRC"; exit 1; }

for pkg in firewall dhcp babeld dropbear; do
	[ -f "$SRC/$pkg" ] || continue
	cp "$SRC/$pkg" "/etc/config/.$pkg.meshd"
	mv "/etc/config/.$pkg.meshd" "/etc/config/$pkg"
done

if [ -f "$SRC/network" ]; then
	for sec in $(sections_of "$SRC" network); do
		uci -q delete "network.$sec" || true
	done
	uci -m import network <"$SRC/network"
	if uci -q -c "$SRC" get network.bat0 >/dev/null; then
		# batman-adv: bridge the mesh into the client network.
		dev=$(uci -q show network | sed -n "s/^network\.\([A-Za-z0-9_]*\)\.name='br-lan'$/\1/p" | head -n 1)
		if [ -n "$dev" ]; then
			uci -q del_list "network.$dev.ports=bat0" || true
			uci add_list "network.$dev.ports=bat0"
		fi
	fi
	uci commit network
fi

if [ -f "$SRC/wireless" ]; then
	touch /etc/config/wireless
	[ -n "$(uci -q show wireless)" ] || wifi config >/dev/null 2>&1 || true
	for sec in $(uci -q show wireless | sed -n 's/^wireless\.\([A-Za-z0-9_]*\)=wifi-iface$/\1/p'); do
		uci -q delete "wireless.$sec" || true
	done
	cp "$SRC/wireless" "$TMP"
	for band in 2g 5g 6g; do
		grep -q "'mm_radio_$band'" "$TMP" || continue
		if radio=$(radio_for_band "$band"); then
			sed -i "s/'mm_radio_$band'/'$radio'/" "$TMP"
		else
			log "this router reports no $band radio; the $band mesh stays off"
		fi
	done
	uci -m import wireless <"$TMP"
	uci commit wireless
fi

hostname=$(uci -q get meshd.main.hostname || true)
if [ -n "$hostname" ]; then
	uci set "system.@system[0].hostname=$hostname"
	uci commit system
fi
uci -q set meshd.main.enabled=1 && uci commit meshd
exit 0
