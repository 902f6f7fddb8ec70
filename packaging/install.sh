#!/usr/bin/env bash
# Install, upgrade, roll back or remove camhub on a Debian 12 / Raspberry Pi OS (bookworm) box.
# `make install`, `make uninstall` and `make rollback` call this; README "Installing on a box".
#
#   packaging/install.sh install      Debian packages, the camhub user, /opt/camhub/.venv, the config,
#                                     the unit; enable and (re)start it, then print the URL, the CA
#                                     fingerprint and the pairing code. Re-running it upgrades.
#   packaging/install.sh uninstall    the service and /opt/camhub; config, data and keys stay unless PURGE=1
#   packaging/install.sh rollback     back to the venv the last upgrade replaced (RESTORE_DB=1: and to the
#                                     database copy taken before it, if the upgrade migrated the schema)
#   packaging/install.sh config       print the config `install` would write (to read it first)
#   packaging/install.sh user         create the camhub system user (what `install` does on a box)
#   packaging/install.sh lan-address  the addresses `install` chooses among (private IPv4, default route)
#   packaging/install.sh report       a daemon log on stdin -> the owner's URL, CA fingerprint, pairing code
#
# With DESTDIR set, the same files are laid out under that root and nothing else happens: no Debian
# packages, no user, no systemctl, no journal (for packagers, and for tests/packaging/test_install.py).
# Files are owned by camhub there only when run as root on a machine that has the camhub user.
#
# Shell, not Python: on a fresh box this runs before any venv exists, and what it does is what an
# admin would type (apt-get, useradd, install, systemctl, journalctl). The few things that need a
# parser (the config's bind, the database's schema version) ask Python.
#
# Environment: DESTDIR, BIND (the address to serve the LAN on; asked for on a terminal when it
# cannot be found), HUB_NAME (default: the host name), UNITDIR, PYTHON, PURGE, RESTORE_DB.
set -Eeuo pipefail
umask 022 # the venv must be readable by the camhub user whatever umask sudo passed on

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DESTDIR=${DESTDIR:-}
DESTDIR=${DESTDIR%/}
PYTHON=${PYTHON:-/usr/bin/python3} # Debian's interpreter: apt keeps it patched
UNITDIR=${UNITDIR:-/usr/local/lib/systemd/system}
SERVICE=camhub.service
SERVICE_USER=camhub

# Final paths on the box; everything written goes to "$DESTDIR$path".
APP=/opt/camhub
VENV=$APP/.venv
CONF_DIR=/etc/camhub
CONF=$CONF_DIR/camhub.toml
STATE=/var/lib/camhub # StateDirectory=camhub in the unit; the example config's data_dir
DB=$STATE/camhub.sqlite # set_db: where the config's data_dir puts it
BIN_LINK=/usr/local/bin/camhub

# What the daemon needs at run time, and nothing the tests need (those are the Makefile's
# SYSTEM_PACKAGES). The wheels bring their own FFmpeg, OpenCV, OpenSSL and OpenBLAS and link only
# glibc, libstdc++, libgcc and zlib, which every Debian has. python3-venv: ensurepip for the venv;
# ca-certificates: a relay reached over tls://; iproute2: `ip`, to find the LAN address; age: the
# stock CLI encrypts deliveries with a third less CPU than pyrage (camhub_protocol/delivery.py,
# encrypt_command; without it the hub falls back to pyrage).
RUNTIME_PACKAGES=(python3 python3-venv ca-certificates iproute2 age)

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
	printf 'camhub %s: %s\n' "${ACTION:-install}" "$*" >&2
	exit 1
}
trap 'printf "camhub %s: failed at line %s: %s\n" "${ACTION:-install}" "$LINENO" "$BASH_COMMAND" >&2' ERR

staged() { [ -n "$DESTDIR" ]; }
is_root() { [ "$(id -u)" = 0 ]; }
have_user() { getent passwd "$SERVICE_USER" >/dev/null; }

# Ownership is applied where it can be: always on a box, under DESTDIR only as root with the user present.
can_own() { is_root && have_user; }

# install(1) with the owner and group only when they can be set.
put() {
	local mode=$1 owner=$2 src=$3 dest=$4
	if can_own; then
		install -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$src" "$dest"
	else
		install -m "$mode" "$src" "$dest"
	fi
}

make_dir() {
	local mode=$1 owner=$2 dir=$3
	mkdir -p "$dir"
	chmod "$mode" "$dir"
	if can_own; then chown "$owner" "$dir"; fi
}

# Run a command as the data's owner (a root-run sqlite3 would leave root-owned -wal/-shm files the
# daemon cannot open; hub/datadir.py become_data_dir_owner says the same for `camhub pair`).
as_owner() {
	if can_own; then runuser -u "$SERVICE_USER" -- "$@"; else "$@"; fi
}

preflight() {
	case "$DESTDIR" in
	*'|'* | *$'\n'*) die "DESTDIR must not contain '|' or a newline" ;;
	esac
	if staged; then
		return
	fi
	is_root || die "run it as root: sudo make $ACTION (or make $ACTION DESTDIR=DIR for a staged tree)"
	[ -d /run/systemd/system ] ||
		die "systemd is not running here (no /run/systemd/system), and camhub runs as a systemd service: use a booted Debian 12 / Raspberry Pi OS box, or make $ACTION DESTDIR=DIR for a staged tree"
}

check_python() {
	[ -x "$PYTHON" ] || die "$PYTHON is missing (install python3, or set PYTHON=)"
	"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
		die "camhub needs Python 3.11 or newer ($PYTHON is $("$PYTHON" -V 2>&1)): Debian 12 (bookworm) or newer"
	"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
		die "$PYTHON cannot make a venv: install python3-venv (apt-get install python3-venv)"
}

debian_packages() {
	local missing=() pkg
	for pkg in "${RUNTIME_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		return
	fi
	say "installing Debian packages: ${missing[*]}"
	apt-get update -qq || die "apt-get update failed (network? /etc/apt/sources.list?)"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
		die "apt-get install ${missing[*]} failed"
}

service_user() {
	if have_user; then
		return
	fi
	say "creating the system user $SERVICE_USER"
	useradd --system --user-group --home-dir "$STATE" --no-create-home --shell /usr/sbin/nologin \
		--comment "camhub camera hub" "$SERVICE_USER"
}

# Private IPv4 addresses on the interface of the default route, one a line.
lan_addresses() {
	local dev
	dev=$(ip -4 route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit }}' || true)
	[ -n "$dev" ] || return 0
	ip -4 -o addr show dev "$dev" scope global 2>/dev/null | awk '{split($4, a, "/"); print a[1]}' |
		grep -E '^(10\.|192\.168\.|172\.(1[6-9]|2[0-9]|3[01])\.)' || true
}

valid_ip() { "$PYTHON" -c 'import ipaddress, sys; ipaddress.ip_address(sys.argv[1])' "$1" 2>/dev/null; }

# The address the owner UI is served on (`[hub] bind`) -> $CHOSEN_BIND.
choose_bind() {
	if [ -n "${BIND:-}" ]; then
		valid_ip "$BIND" || die "BIND=$BIND is not an IP address"
		CHOSEN_BIND=$BIND
		return
	fi
	if staged; then
		# A staged tree is not the box it will run on: loopback until the box's admin sets bind.
		CHOSEN_BIND=127.0.0.1
		return
	fi
	local found=()
	mapfile -t found < <(lan_addresses)
	if [ ${#found[@]} -eq 1 ]; then
		CHOSEN_BIND=${found[0]}
		return
	fi
	local why="found ${#found[@]} private IPv4 addresses on the default route's interface${found[*]:+ (${found[*]})}"
	if [ -t 0 ]; then
		read -r -p "camhub: $why. Address to serve the owner UI on (this box's LAN address): " CHOSEN_BIND
		valid_ip "$CHOSEN_BIND" || die "$CHOSEN_BIND is not an IP address"
		return
	fi
	die "$why; say which: sudo make install BIND=<this box's LAN address>"
}

# A DNS label from the host name (the hub is <name>.local on mDNS and in its HTTPS certificate)
# -> $CHOSEN_NAME.
choose_name() {
	if [ -n "${HUB_NAME:-}" ]; then
		[[ $HUB_NAME =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] ||
			die "HUB_NAME=$HUB_NAME: use 1-63 of a-z, 0-9 and '-', not starting or ending with '-'"
		CHOSEN_NAME=$HUB_NAME
		return
	fi
	local name
	name=$(uname -n)
	name=${name%%.*}
	name=$(printf '%s' "$name" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9-' '-' | cut -c1-63 | sed -e 's/^-*//' -e 's/-*$//')
	CHOSEN_NAME=${name:-camhub}
}

# The config from the example: hub name and bind filled in, the example cameras commented out (a
# camera at someone else's address and a published WHIP token must not go live on a real box).
render_config() {
	local name=$1 bind=$2
	printf '# Written by make install (packaging/install.sh) from configs/camhub.example.toml; re-running it\n'
	printf '# never overwrites this file. Add cameras in the web UI (Settings) or below.\n\n'
	awk -v name="$name" -v bind="$bind" '
		# key = "value"   # comment: a new value, the comment kept in its column
		function fill(value,   head, rest, col) {
			match($0, /^[a-z_]+ = "[^"]*"/)
			head = substr($0, 1, RLENGTH)
			rest = substr($0, RLENGTH + 1)
			col = RLENGTH + match(rest, /[^ ]/) - 1
			head = substr(head, 1, index(head, "\"")) value "\""
			rest = substr(rest, match(rest, /[^ ]/))
			if (rest == "") return head
			return sprintf("%-" (col > length(head) ? col : length(head) + 1) "s%s", head, rest)
		}
		/^\[/ { section = $0; cameras = ($0 ~ /^\[\[cameras\]\]/ || $0 ~ /^\[cameras\./) }
		section == "[hub]" && /^name = "/ { $0 = fill(name) }
		section == "[hub]" && /^bind = "/ { $0 = fill(bind) }
		cameras && !/^#/ && !/^[[:space:]]*$/ { $0 = "# " $0 }
		{ print }
	' "$SRC/configs/camhub.example.toml"
}

write_config() {
	local dest=$DESTDIR$CONF
	if [ -e "$dest" ]; then
		note "keeping $CONF (compare with $APP/camhub.example.toml for new settings)"
	else
		local name bind tmp
		choose_name
		choose_bind
		name=$CHOSEN_NAME bind=$CHOSEN_BIND
		tmp=$(mktemp "$WORK/config.XXXXXX")
		render_config "$name" "$bind" >"$tmp"
		if ! grep -q "^name = \"$name\"" "$tmp" || ! grep -q "^bind = \"$bind\"" "$tmp"; then
			die "configs/camhub.example.toml no longer has the [hub] name and bind lines this script fills in"
		fi
		put 0640 "root:$SERVICE_USER" "$tmp" "$dest"
		say "wrote $CONF (name = \"$name\", bind = \"$bind\")"
	fi
	# Camera passwords and relay credentials live here: root writes it, the daemon reads it.
	chmod 0640 "$dest"
	if can_own; then chown "root:$SERVICE_USER" "$dest"; fi
}

# A fresh venv beside the running one, so an upgrade that fails leaves the box as it was.
build_venv() {
	local new=$DESTDIR$VENV.new stage=$WORK/src wheels=$WORK/wheels
	rm -rf "$new"
	say "building $VENV (pip; the first time downloads ~100 MB of wheels)"
	"$PYTHON" -m venv "$new"
	# Built from a copy, so a `sudo make install` leaves no root-owned build/ or *.egg-info in the checkout.
	mkdir -p "$stage"
	tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=node_modules --exclude=./demo-data \
		--exclude=./build --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ \
		--exclude=.pytest_cache --exclude=.ruff_cache --exclude=.hypothesis --exclude=./fuzz/.corpus \
		-cf - . | tar -C "$stage" -xf -
	"$new/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" "$stage" ||
		die "could not build the camhub wheel from $SRC"
	"$new/bin/python" -m pip install --progress-bar off "$wheels"/camhub-*.whl ||
		die "pip could not install camhub and its dependencies (network? PyPI? the log above says which)"
	# Scripts and activate name the venv's path: make them name where it will run, so the tree is right
	# under DESTDIR and a venv moved back by `rollback` still works.
	local file
	while IFS= read -r file; do
		sed -i "s|${new//./\\.}|$VENV|g" "$file"
	done < <(grep -rlF -- "$new" "$new/bin" "$new/pyvenv.cfg" || true)
	if grep -rqF -- "$new" "$new/bin" "$new/pyvenv.cfg"; then
		die "$new is still named in its scripts"
	fi
}

# The version about to run must accept the config before the running one is stopped.
check_config() {
	local venv=$1 what=$2 hint=$3
	"$venv/bin/python" -m hub check-config --config "$DESTDIR$CONF" >/dev/null ||
		die "$what rejects $CONF (above); the running service was not touched. $hint"
}

# The database under the config's [hub] data_dir (resolved as hub/config.py does), or the default.
set_db() {
	local dir
	dir=$("$PYTHON" -c '
import pathlib, sys, tomllib
try:
    d = tomllib.loads(pathlib.Path(sys.argv[1]).read_text()).get("hub", {}).get("data_dir", sys.argv[3])
except (OSError, ValueError):
    d = sys.argv[3]
print(pathlib.PurePosixPath(sys.argv[2]) / d if isinstance(d, str) and d else sys.argv[3])
' "$DESTDIR$CONF" "$CONF_DIR" "$STATE")
	DB=$dir/camhub.sqlite
}

# PRAGMA user_version of the database (0 when there is none) and the newest migration a venv ships.
db_schema() {
	local db=$DESTDIR$DB
	if [ ! -e "$db" ]; then
		echo 0
		return
	fi
	as_owner "$PYTHON" -c '
import pathlib, sqlite3, sys
conn = sqlite3.connect(pathlib.Path(sys.argv[1]).absolute().as_uri() + "?mode=ro", uri=True)
print(conn.execute("PRAGMA user_version").fetchone()[0])
conn.close()
' "$db"
}
venv_schema() { "$1/bin/python" -c 'from hub.store import migrations; print(migrations()[-1][0])'; }
source_schema() {
	local newest
	newest=$(find "$SRC/hub/store/migrations" -name '[0-9][0-9][0-9][0-9]_*.sql' -printf '%f\n' | sort | tail -n 1)
	[ -n "$newest" ] || die "no migrations in $SRC/hub/store/migrations"
	echo $((10#${newest%%_*}))
}

# A consistent copy (SQLite's backup API, WAL included) of the database as it was before the upgrade,
# kept beside it (0600, the daemon's user) for `rollback RESTORE_DB=1`.
backup_db() {
	local db=$DESTDIR$DB
	[ -e "$db" ] || return 0
	as_owner "$PYTHON" -c '
import os, pathlib, sqlite3, sys
src, dest = pathlib.Path(sys.argv[1]).absolute(), sys.argv[2]
tmp = dest + ".tmp"
os.umask(0o077)
s = sqlite3.connect(src.as_uri() + "?mode=ro", uri=True)
d = sqlite3.connect(tmp)
s.backup(d)
d.close()
s.close()
os.replace(tmp, dest)
' "$db" "$db.previous"
	note "copied the database to $DB.previous (for make rollback RESTORE_DB=1)"
}

swap_venvs() {
	local cur=$DESTDIR$VENV
	rm -rf "$cur.previous"
	if [ -d "$cur" ]; then mv -T "$cur" "$cur.previous"; fi
	mv -T "$cur.new" "$cur"
}

service_active() { ! staged && systemctl is-active --quiet "$SERVICE"; }

# Start (or restart) the service and tell the owner where to go. Type=notify: `systemctl restart`
# returns once the daemon said READY=1, so its start-up lines are in the journal by then.
start_and_report() {
	systemctl daemon-reload
	systemctl enable --quiet "$SERVICE"
	say "starting $SERVICE"
	local since
	since=$(date +%s)
	if ! systemctl restart "$SERVICE"; then
		journalctl --no-pager -u "$SERVICE" -n 40 >&2 || true
		if [ -d "$VENV.previous" ]; then
			die "$SERVICE did not start (journal above). To go back to the previous version: sudo make rollback"
		fi
		die "$SERVICE did not start (journal above). Fix what it says (often $CONF), then: sudo systemctl restart $SERVICE"
	fi
	# This start's lines (the previous run stopped before $since, and the report takes the last of each).
	# journald may file the last lines a moment after READY=1: poll, with a deadline.
	local log="" deadline=$((SECONDS + 30))
	until grep -q 'camhub ready url=' <<<"$log"; do
		[ $SECONDS -lt $deadline ] || die "$SERVICE runs but its journal has no 'camhub ready' line: journalctl -u $SERVICE"
		sleep 0.2
		log=$(journalctl --no-pager -o cat -u "$SERVICE" --since "@$since" 2>/dev/null || true)
	done
	local bind
	bind=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("hub", {}).get("bind", "127.0.0.1"))' "$CONF")
	report "$bind" <<<"$log"
}

# The daemon's start-up lines (hub/daemon.py) on stdin, and the configured bind -> what the owner
# needs to pair a browser.
report() {
	local bind=${1:-} log ready https fp code valid url port
	log=$(cat)
	ready=$(sed -n 's/.*camhub ready url=\([^ ]*\) hub_id=\([^ ]*\).*/\1 \2/p' <<<"$log" | tail -n 1)
	[ -n "$ready" ] || die "no 'camhub ready' line in the log"
	https=$(sed -n 's/.*owner UI https url=\([^ ]*\) ca_sha256=\([0-9A-F:]*\).*/\1/p' <<<"$log" | tail -n 1)
	fp=$(sed -n 's/.*owner UI https url=[^ ]* ca_sha256=\([0-9A-F:]*\).*/\1/p' <<<"$log" | tail -n 1)
	code=$(sed -n 's/.*pairing code: \([0-9A-Z]\{4\}-[0-9A-Z]\{4\}\).*/\1/p' <<<"$log" | tail -n 1)
	valid=$(sed -n 's/.*Single use, valid \([0-9]* minutes\).*/\1/p' <<<"$log" | tail -n 1)
	echo
	echo "camhub is running (hub id ${ready#* })."
	if [ -n "$https" ]; then
		url=$https
		port=${https##*:}
		port=${port%/}
		case "$bind" in
		"" | 0.0.0.0 | ::) ;; # every interface: the .local name is the one address to give
		*:*) url="https://[$bind]:$port/" ;;
		*) url="https://$bind:$port/" ;;
		esac
		if [ "$url" = "$https" ]; then
			echo "  Open on the LAN:  $url"
		else
			echo "  Open on the LAN:  $url  (or $https)"
		fi
		echo "  CA fingerprint:   SHA-256 $fp"
		echo "                    compare it with the one your browser shows for ${url%/}/ca.crt before trusting it"
		case "$bind" in
		"" | 0.0.0.0 | :: | 127.* | ::1) ;;
		*) echo "  The hub listens on $bind only: give the box that address for good (a DHCP reservation in the router), or set bind = \"0.0.0.0\" in $CONF." ;;
		esac
	else
		echo "  Open on this box: ${ready% *}/  (bind is loopback: set [hub] bind in $CONF to serve the LAN)"
	fi
	if [ -n "$code" ]; then
		echo "  Pairing code:     $code  (single use${valid:+, valid $valid}; sudo camhub pair --config $CONF makes a new one)"
	else
		echo "  Pairing code:     none (an owner is paired; sudo camhub pair --config $CONF makes one)"
	fi
}

do_install() {
	preflight
	if ! staged; then
		debian_packages # first: a fresh box may lack python3-venv, which check_python needs
	fi
	check_python
	if ! staged; then
		service_user
	elif ! can_own; then
		note "not run as root with a $SERVICE_USER user here: ownership not set; at install time:"
		note "chown root:$SERVICE_USER $CONF_DIR $CONF; chown $SERVICE_USER:$SERVICE_USER $STATE"
	fi
	make_dir 0755 root:root "$DESTDIR$APP"
	make_dir 0750 "root:$SERVICE_USER" "$DESTDIR$CONF_DIR"
	make_dir 0700 "$SERVICE_USER:$SERVICE_USER" "$DESTDIR$STATE"
	# System directories that may exist with their own owner and mode (/usr/local/bin is root:staff
	# 2775 on some Debian boxes) are only created, never changed.
	mkdir -p "$DESTDIR$UNITDIR" "$DESTDIR$(dirname "$BIN_LINK")"
	put 0644 root:root "$SRC/README.md" "$DESTDIR$APP/README.md"
	put 0644 root:root "$SRC/configs/camhub.example.toml" "$DESTDIR$APP/camhub.example.toml"
	write_config
	set_db

	# Checked before the slow build: this source's newest migration against the database's schema.
	local from to
	from=$(db_schema)
	to=$(source_schema)
	if [ "$from" -gt "$to" ]; then
		die "the database $DB is at schema $from, newer than this camhub's ($to): a newer camhub ran here; install that version again (or make rollback RESTORE_DB=1 after it)"
	fi

	build_venv
	check_config "$DESTDIR$VENV.new" "the new camhub" \
		"Fix it (new settings: $APP/camhub.example.toml) and run make install again."

	put 0644 root:root "$SRC/systemd/$SERVICE" "$DESTDIR$UNITDIR/$SERVICE"
	ln -sfn "$VENV/bin/camhub" "$DESTDIR$BIN_LINK"

	if service_active; then
		say "stopping $SERVICE for the upgrade"
		systemctl stop "$SERVICE"
	fi
	if [ -e "$DESTDIR$DB" ]; then
		backup_db
		if [ "$to" -gt "$from" ]; then note "the database moves from schema $from to $to when camhub starts"; fi
	fi
	swap_venvs
	if [ -d "$DESTDIR$VENV.previous" ]; then note "kept the replaced version in $VENV.previous (make rollback)"; fi

	if staged; then
		say "staged camhub under $DESTDIR (nothing started)"
		return
	fi
	start_and_report
}

do_uninstall() {
	preflight
	if ! staged && [ -e "$UNITDIR/$SERVICE" ]; then
		say "stopping and disabling $SERVICE"
		systemctl disable --now --quiet "$SERVICE" || true
	fi
	rm -f "$DESTDIR$UNITDIR/$SERVICE"
	if [ -L "$DESTDIR$BIN_LINK" ] && [ "$(readlink "$DESTDIR$BIN_LINK")" = "$VENV/bin/camhub" ]; then
		rm -f "$DESTDIR$BIN_LINK"
	fi
	rm -rf "$DESTDIR$APP"
	say "removed $SERVICE and $APP"
	if [ "${PURGE:-0}" = 1 ]; then
		if [ -x "$PYTHON" ]; then set_db; fi
		if [ "$(dirname "$DB")" != "$STATE" ]; then
			note "data_dir is $(dirname "$DB"), not $STATE: remove it yourself if you mean to"
		fi
		rm -rf "$DESTDIR$CONF_DIR" "$DESTDIR$STATE"
		if ! staged; then
			rm -rf "/etc/systemd/system/$SERVICE.d"
			if have_user; then
				userdel "$SERVICE_USER"
				note "removed the $SERVICE_USER user"
			fi
		fi
		say "PURGE=1: removed $CONF_DIR and $STATE (footage, keys, database)"
	else
		note "kept $CONF_DIR (config) and $STATE (footage, keys, database); PURGE=1 removes them"
	fi
	if ! staged; then systemctl daemon-reload; fi
}

do_rollback() {
	preflight
	check_python
	set_db
	local cur=$DESTDIR$VENV prev=$DESTDIR$VENV.previous
	[ -d "$prev" ] || die "there is no $VENV.previous to go back to (it is kept by the last make install that replaced a version)"
	[ -d "$cur" ] || die "$VENV is missing"
	[ ! -e "$cur.swap" ] || die "$VENV.swap exists (an interrupted rollback?): see which version it is, then remove it"
	check_config "$prev" "the previous camhub" "Take out the settings it does not know, then make rollback again."
	local have want
	have=$(db_schema)
	want=$(venv_schema "$prev")
	local restore=0
	if [ "$have" -gt "$want" ]; then
		if [ "${RESTORE_DB:-0}" != 1 ]; then
			die "the upgrade moved the database to schema $have and the previous version reads up to $want. make rollback RESTORE_DB=1 goes back to the copy taken before the upgrade ($DB.previous): what the database recorded since (requests, decisions, audit entries, the index of newer footage; the footage files stay) is then set aside in $DB.rolled-back"
		fi
		[ -e "$DESTDIR$DB.previous" ] || die "no $DB.previous to restore"
		restore=1
	fi
	if service_active; then
		say "stopping $SERVICE"
		systemctl stop "$SERVICE"
	fi
	if [ "$restore" = 1 ]; then
		local db=$DESTDIR$DB suffix
		for suffix in "" -wal -shm; do
			if [ -e "$db$suffix" ]; then mv "$db$suffix" "$db.rolled-back$suffix"; fi
		done
		mv "$db.previous" "$db"
		note "restored $DB from before the upgrade; the newer one is $DB.rolled-back"
	fi
	# A swap, so a second rollback goes forward again.
	mv -T "$cur" "$cur.swap"
	mv -T "$prev" "$cur"
	mv -T "$cur.swap" "$prev"
	say "rolled back to the previous version (the newer one is now $VENV.previous)"
	if staged; then
		return
	fi
	start_and_report
}

ACTION=${1:-install}
WORK=$(mktemp -d)
# A failed install leaves no half-built venv behind (the running version was not touched).
trap 'rm -rf "$WORK"; if [ "$ACTION" = install ]; then rm -rf "$DESTDIR$VENV.new"; fi' EXIT
case "$ACTION" in
install) do_install ;;
uninstall) do_uninstall ;;
rollback) do_rollback ;;
config)
	choose_name
	choose_bind
	render_config "$CHOSEN_NAME" "$CHOSEN_BIND"
	;;
user)
	is_root || die "run it as root"
	service_user
	;;
lan-address) lan_addresses ;;
report) report "${2:-}" ;;
*) die "usage: $0 install|uninstall|rollback|config|user|lan-address|report [BIND]" ;;
esac
