#!/usr/bin/env bash
# The Debian package's install test, run by .ci/run as root on a fresh
# machine: build the package, install it with dpkg -i, check the layout,
# do what the operator does (the configuration, keygen as root,
# check-config), start `smimegate serve` as the smimegate user as the
# systemd unit would, use the running gateway (a message queued over SMTP,
# the queue commands and the console's login through the admin token), then
# remove and purge the package. It changes the system: it is for CI and for
# machines made for it, not for a developer's desktop.
set -euo pipefail

cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:/usr/sbin:/sbin:$PATH"
work=$(mktemp -d)
serve_pid=
cleanup() {
	if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
		kill "$serve_pid"; wait "$serve_pid" || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "install test: $*" >&2; [ -f "$work/serve.log" ] && cat "$work/serve.log" >&2; exit 1; }
mode_is() { # path owner:group mode
	got=$(stat -c '%U:%G %a' "$1")
	[ "$got" = "$2 $3" ] || fail "$1 is $got, want $2 $3"
}

# A machine where this ran before (CI runs on the machine of the session
# that submitted) may hold what it left; a machine with a real smimegate is
# left alone.
if [ -e /etc/smimegate ] || dpkg-query -W smimegate >/dev/null 2>&1; then
	[ -n "${CI:-}" ] || fail "/etc/smimegate or the smimegate package exists: this test installs and purges the package; run it on a machine made for it (CI=true)"
	dpkg -P smimegate >/dev/null 2>&1 || true
	rm -rf /etc/smimegate /var/lib/smimegate
fi

deb=$(go run ./dist/deb -out "$work")
case "$deb" in */smimegate_*_amd64.deb) ;; *) fail "the builder printed $deb" ;; esac
echo "install test: built $(basename "$deb")"

# A machine that had an earlier run keeps the user; a fresh one has none.
dpkg -i "$deb"
getent passwd smimegate >/dev/null || fail "no smimegate user"
[ "$(getent passwd smimegate | cut -d: -f7)" = /usr/sbin/nologin ] || fail "the smimegate user has a login shell"
mode_is /usr/bin/smimegate root:root 755
mode_is /etc/smimegate root:smimegate 750
mode_is /etc/smimegate/own root:smimegate 750
mode_is /etc/smimegate/partners root:root 755
mode_is /etc/smimegate/smimegate.toml root:smimegate 640
mode_is /var/lib/smimegate smimegate:smimegate 700
mode_is /lib/systemd/system/smimegate.service root:root 644
conffiles=$(dpkg-query -W -f='${Conffiles}\n' smimegate)
case "$conffiles" in *" /etc/smimegate/smimegate.toml "*) ;; *) fail "smimegate.toml is not a conffile" ;; esac

# The example refuses to run until the operator sets the domains.
if smimegate check-config -config /etc/smimegate/smimegate.toml >/dev/null 2>"$work/err"; then
	fail "the unedited example configuration passed check-config"
fi
grep -q "local_domains" "$work/err" || fail "check-config of the example does not name local_domains: $(cat "$work/err")"

# What the operator does (ports off the defaults, so that nothing else on
# the machine is in the way).
conf=/etc/smimegate/smimegate.toml
sed -i -e 's/^local_domains = \[\]/local_domains = ["example.org"]/' \
	-e 's/^inbound = ""/inbound = "127.0.0.1:42700"/' \
	-e 's/^listen = \["127.0.0.1:2525"\]/listen = ["127.0.0.1:42525"]/' \
	-e 's/^listen = "127.0.0.1:8025"/listen = "127.0.0.1:48025"/' "$conf"
smimegate keygen -domain example.org -key p256 -out /etc/smimegate/own
mode_is /etc/smimegate/own/example.org.key root:smimegate 640
mode_is /etc/smimegate/own/example.org.crt root:root 644
smimegate check-config -config "$conf" >/dev/null 2>"$work/err" || fail "check-config: $(cat "$work/err")"
if grep -q "private key but" "$work/err"; then fail "check-config warns about the key's mode: $(cat "$work/err")"; fi

# serve as the unit's User= would run it.
# setpriv execs the gateway itself, so that the SIGTERM below reaches it
# as systemd's would.
setpriv --reuid=smimegate --regid=smimegate --init-groups /usr/bin/smimegate serve -config "$conf" >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do
	curl -fsS http://127.0.0.1:48025/healthz >/dev/null 2>&1 && break
	kill -0 "$serve_pid" 2>/dev/null || fail "serve exited"
	sleep 0.1
done
# Each page is read whole before it is searched: with pipefail, grep -q
# leaving at its first match would make curl fail on the rest (exit 23).
page=$(curl -fsS http://127.0.0.1:48025/healthz) || fail "no /healthz"
case "$page" in *ok*) ;; *) fail "no /healthz: $page" ;; esac
mode_is /var/lib/smimegate/admin.token smimegate:smimegate 600

# A message to a local domain whose internal server is down: queued by the
# service user, listed by root acting as that user.
swaks --silent 2 --server 127.0.0.1:42525 --from alice@example.net --to bob@example.org --body "install test" >/dev/null || fail "swaks"
for _ in $(seq 100); do
	out=$(smimegate queue list -config "$conf" 2>/dev/null) || true
	case "$out" in *"1 message(s)"*) break ;; esac
	sleep 0.1
done
case "$out" in *"bob@example.org"*) ;; *) fail "queue list: $out" ;; esac
if find /var/lib/smimegate ! -user smimegate | grep -q .; then
	fail "files in state_dir not owned by smimegate: $(find /var/lib/smimegate ! -user smimegate)"
fi

# The console: the login link works once, without it nothing is shown.
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:48025/console/queue)
[ "$code" = 403 ] || fail "the console without a login answered $code"
url=$(smimegate admin url -config "$conf" 2>/dev/null)
page=$(curl -fsS -c "$work/cookies" -L "$url") || fail "the login link did not open the console"
case "$page" in *"<title>Overview"*) ;; *) fail "the login link did not open the console" ;; esac
page=$(curl -fsS -b "$work/cookies" http://127.0.0.1:48025/console/queue) || fail "the console does not show the queued message"
case "$page" in *"bob@example.org"*) ;; *) fail "the console does not show the queued message" ;; esac
code=$(curl -s -o /dev/null -w '%{http_code}' "$url")
[ "$code" = 403 ] || fail "a spent login link answered $code"

kill "$serve_pid"
wait "$serve_pid" || fail "serve exited non-zero after SIGTERM"
serve_pid=
grep -q 'msg=stopped queued=1' "$work/serve.log" || fail "serve did not stop cleanly with the message queued"

# The unit file parses and names an executable binary (systemd-analyze
# needs no running systemd for this).
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify /lib/systemd/system/smimegate.service >"$work/verify" 2>&1 || fail "systemd-analyze verify: $(cat "$work/verify")"
fi

dpkg -r smimegate >/dev/null
[ ! -e /usr/bin/smimegate ] || fail "dpkg -r left /usr/bin/smimegate"
[ -e /etc/smimegate/smimegate.toml ] || fail "dpkg -r removed the conffile"
dpkg -P smimegate >/dev/null
[ ! -e /etc/smimegate/smimegate.toml ] || fail "dpkg -P left the conffile"
[ -e /etc/smimegate/own/example.org.key ] || fail "dpkg -P removed the domain key"
if dpkg-statoverride --list /var/lib/smimegate >/dev/null; then fail "dpkg -P left a statoverride"; fi
# The keys, the queue and the user stay by design; this test's go too.
rm -rf /etc/smimegate /var/lib/smimegate
echo "install test: the package builds, installs, serves and purges"
