#!/usr/bin/env bash
# Install the real servers the realservers integration suite runs:
# postfix (with posttls-finger), exim4 (the exim4-daemon-light binary, see
# below), nsd, unbound, nginx and openssl, and the tools of the DNSSEC, DANE
# and MTA-STS harness (ldnsutils: ldns-keygen, ldns-signzone, ldns-dane;
# bind9-dnsutils: dig, delv; curl), from Debian's packages. Idempotent: a
# second run installs nothing and takes about a second.
#
#   sudo bash realservers/install.sh
#
# Postfix and exim4-daemon-light both provide mail-transport-agent and conflict
# with it, so apt will not install both. Postfix is installed as a package (it
# needs its users, groups, /etc/postfix/dynamicmaps.cf, daemons under
# /usr/lib/postfix); exim is a single binary, so exim4-daemon-light's .deb is
# fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
# $MXSURVEY_REALSERVERS_PREFIX (default /opt/mxsurvey-realservers), after its
# shared libraries are installed with apt. The suite finds it there
# (usr/sbin/exim4). Nothing of exim is configured system-wide.
#
# No service is left running: a policy-rc.d that refuses to start services is
# in place while apt runs (the one already present is kept), and a postfix
# master started by this run's install is stopped.
set -euo pipefail

PREFIX=${MXSURVEY_REALSERVERS_PREFIX:-/opt/mxsurvey-realservers}
EXIM="$PREFIX/exim/usr/sbin/exim4"
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" != 0 ]; then
	echo "realservers/install.sh: must run as root (apt-get)" >&2
	exit 1
fi

# Libraries exim4-daemon-light (bookworm) links against, so the unpacked binary runs.
EXIM_LIBS="libc6 libcrypt1 libdb5.3 libgnutls-dane0 libgnutls30 libidn12 libidn2-0 libpcre2-8-0 libnsl2"
PKGS="postfix nsd unbound nginx ldnsutils bind9-dnsutils curl openssl ssl-cert ca-certificates $EXIM_LIBS"

have_all() {
	command -v postfix >/dev/null && command -v nsd >/dev/null && command -v openssl >/dev/null &&
		command -v unbound >/dev/null && command -v nginx >/dev/null &&
		command -v ldns-signzone >/dev/null && command -v ldns-keygen >/dev/null && command -v ldns-dane >/dev/null &&
		command -v dig >/dev/null && command -v delv >/dev/null && command -v curl >/dev/null && command -v unshare >/dev/null &&
		[ -x /usr/sbin/posttls-finger ] && [ -x "$EXIM" ] && "$EXIM" -C /dev/null -bV >/dev/null 2>&1
}

if have_all; then
	echo "realservers/install.sh: already installed (postfix, nsd, unbound, nginx, ldnsutils, dig, delv, curl, openssl, $EXIM)"
	exit 0
fi

# Refuse service starts during the install unless a policy already does.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$POLICY"
	chmod 755 "$POLICY"
	trap 'rm -f "$POLICY"' EXIT
fi

# apt-get update once, only when the package lists are empty.
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
	apt-get update -q
fi

postfix_was_installed=no
command -v postfix >/dev/null && postfix_was_installed=yes

echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $PKGS ||
	{ apt-get update -q && apt-get install -y -q --no-install-recommends $PKGS; }

# A postfix master started by this install (on a machine that starts services)
# would hold port 25 on 127.0.0.1: stop it. One that was there before is left alone.
if [ "$postfix_was_installed" = no ] && [ -s /var/spool/postfix/pid/master.pid ]; then
	pid=$(tr -d ' ' </var/spool/postfix/pid/master.pid)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		postfix stop || true
	fi
fi
# Same for nsd, unbound and nginx (the test runs its own, on 127.77.0.x).
for pf in /run/nsd/nsd.pid:nsd /run/unbound.pid:unbound /run/nginx.pid:nginx; do
	file=${pf%%:*} comm=${pf##*:}
	if command -v service >/dev/null && [ -s "$file" ]; then
		pid=$(cat "$file")
		if kill -0 "$pid" 2>/dev/null && [ "$(ps -o comm= -p "$pid")" = "$comm" ]; then
			kill -TERM "$pid" || true
		fi
	fi
done

if ! { [ -x "$EXIM" ] && "$EXIM" -C /dev/null -bV >/dev/null 2>&1; }; then
	tmp=$(mktemp -d)
	chmod 755 "$tmp" # apt-get download fetches as _apt
	(cd "$tmp" && apt-get download -q exim4-daemon-light)
	rm -rf "$PREFIX/exim"
	mkdir -p "$PREFIX/exim"
	dpkg-deb -x "$tmp"/exim4-daemon-light_*.deb "$PREFIX/exim"
	rm -rf "$tmp"
fi

# The exim binary is built to run as the Debian-exim user (compiled in, looked
# up at start, even for -bV): create it as exim4-base's postinst would.
if ! getent passwd Debian-exim >/dev/null; then
	adduser --system --group --quiet --home /var/spool/exim4 --no-create-home \
		--disabled-login --force-badname Debian-exim
fi

if ! have_all; then
	echo "realservers/install.sh: install incomplete:" >&2
	command -v postfix nsd unbound nginx ldns-signzone ldns-keygen ldns-dane dig delv curl unshare openssl >&2 || true
	ls -l /usr/sbin/posttls-finger "$EXIM" >&2 || true
	"$EXIM" -C /dev/null -bV >&2 || true
	exit 1
fi
echo "realservers/install.sh: ok: $(postconf -h mail_version 2>/dev/null | sed 's/^/postfix /'), $("$EXIM" -C /dev/null -bV 2>/dev/null | grep -m1 "^Exim version"), $(nsd -v 2>&1 | head -1), unbound $(unbound -V 2>/dev/null | sed -n 's/^Version //p'), $(nginx -v 2>&1), $(ldns-signzone -v 2>&1 | head -1), $(delv -v 2>&1 | head -1), $(openssl version)"
