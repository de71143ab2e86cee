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
#
# Sections are found with `uci -X show`, which names anonymous sections by their cfgXXXXXX id
# (plain `uci show` prints `@device[0]`, which a name pattern cannot match): config_generate
# makes br-lan's device section anonymous, and LuCI adds wifi-ifaces as anonymous sections.
set -eu

SRC=${1:-/etc/meshd/uci}
# Where the UCI files live; only tests point it elsewhere (uci itself reads /etc/config).
CONF=${MESHD_CONFIG_DIR:-/etc/config}
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

sections_of_type() {
	# sections_of_type PACKAGE TYPE: every section of TYPE, anonymous ones by their cfg id.
	uci -q -X show "$1" | sed -n "s/^$1\.\([A-Za-z0-9_]*\)=$2\$/\1/p"
}

radio_for_band() {
	for radio in $(sections_of_type wireless wifi-device); do
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
	cp "$SRC/$pkg" "$CONF/.$pkg.meshd"
	mv "$CONF/.$pkg.meshd" "$CONF/$pkg"
done

if [ -f "$SRC/network" ]; then
	for sec in $(sections_of "$SRC" network); do
		uci -q delete "network.$sec" || true
	done
	uci -m import network <"$SRC/network"
	if uci -q -c "$SRC" get network.bat0 >/dev/null; then
		# batman-adv: bridge the mesh into the client network.
		dev=""
		for sec in $(sections_of_type network device); do
			if [ "$(uci -q get "network.$sec.name")" = br-lan ]; then
				dev=$sec
				break
			fi
		done
		if [ -n "$dev" ]; then
			uci -q del_list "network.$dev.ports=bat0" || true
			uci add_list "network.$dev.ports=bat0"
		else
			log "no br-lan device section: bat0 is not bridged to the clients"
		fi
	fi
	uci commit network
fi

if [ -f "$SRC/wireless" ]; then
	touch "$CONF/wireless"
	[ -n "$(uci -q show wireless)" ] || wifi config >/dev/null 2>&1 || true
	# Every wifi-iface goes, named (default_radio0) or anonymous (added in LuCI).
	for sec in $(sections_of_type wireless wifi-iface); do
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
