#!/bin/sh
# prerm of smimegate: stop the gateway before its files go. SIGTERM lets
# deliveries in flight finish; the queue stays in /var/lib/smimegate.
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop smimegate.service >/dev/null 2>&1 || true
	systemctl disable smimegate.service >/dev/null 2>&1 || true
fi
exit 0
