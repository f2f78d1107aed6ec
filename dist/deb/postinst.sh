#!/bin/sh
# postinst of smimegate: the service user, and the owners and modes that
# need it. dpkg-statoverride records them, so that upgrades keep them and an
# operator's own override (dpkg-statoverride --update --add ...) wins.
set -e

if [ "$1" = configure ]; then
	if ! getent passwd smimegate >/dev/null; then
		adduser --system --group --home /var/lib/smimegate --no-create-home \
			--shell /usr/sbin/nologin --gecos "smimegate mail gateway" smimegate >/dev/null
	fi
	# path owner group mode: the service reads the configuration and the
	# keys (root-owned, group smimegate, so it cannot change them) and owns
	# its state directory alone.
	while read -r path owner group mode; do
		if ! dpkg-statoverride --list "$path" >/dev/null 2>&1; then
			dpkg-statoverride --update --add "$owner" "$group" "$mode" "$path"
		fi
	done <<OVERRIDES
/etc/smimegate root smimegate 0750
/etc/smimegate/own root smimegate 0750
/etc/smimegate/smimegate.toml root smimegate 0640
/var/lib/smimegate smimegate smimegate 0700
OVERRIDES

	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || true
		# An upgrade restarts a running gateway; a first install does not
		# start it: it needs local_domains, relay.inbound and a key first.
		if systemctl is-active --quiet smimegate.service; then
			systemctl restart smimegate.service || true
		fi
	fi
	if [ -z "$2" ]; then
		echo "smimegate: edit /etc/smimegate/smimegate.toml, make the domain key (smimegate keygen -domain DOMAIN -out /etc/smimegate/own), then: smimegate check-config -config /etc/smimegate/smimegate.toml && systemctl enable --now smimegate"
	fi
fi
exit 0
