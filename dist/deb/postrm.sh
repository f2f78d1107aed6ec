#!/bin/sh
# postrm of smimegate. Purge forgets the owners and modes postinst
# recorded. It keeps /var/lib/smimegate (queued and quarantined mail, the
# admin token), /etc/smimegate/own (the domain keys) and the smimegate user,
# which may still own files: removing mail or keys is the operator's call.
set -e
if [ "$1" = purge ]; then
	for path in /etc/smimegate /etc/smimegate/own /etc/smimegate/smimegate.toml /var/lib/smimegate; do
		if dpkg-statoverride --list "$path" >/dev/null 2>&1; then
			dpkg-statoverride --remove "$path"
		fi
	done
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
