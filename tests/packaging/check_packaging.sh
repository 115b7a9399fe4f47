#!/usr/bin/env bash
# Packaging checks, one per CTest test (see CMakeLists.txt here):
#
#   check_packaging.sh units|manpages|conffile|maintainer_scripts|deb
#
# Environment (set by CTest): REFERRALD, REFERRALCTL (built binaries),
# REFERRAL_SOURCE_DIR, REFERRAL_BUILD_DIR, REFERRAL_PKG_TMP (scratch; a failed
# test leaves its files there). Exit 0 pass, 1 fail, 77 skipped because a
# tool is missing.
set -euo pipefail

# The systemd-analyze security exposure the service unit must not exceed, in
# tenths (systemd's scale: 0 is best, 10 worst; up to 1.9 counts as "OK").
# Reached: 1.1. Lower it when the unit gets tighter; raise it only with a
# reason written next to the setting in systemd/referrald.service.
MAX_EXPOSURE_TENTHS=11

: "${REFERRALD:?}" "${REFERRALCTL:?}" "${REFERRAL_SOURCE_DIR:?}" "${REFERRAL_BUILD_DIR:?}"
SRC=$REFERRAL_SOURCE_DIR
BUILD=$REFERRAL_BUILD_DIR
PAGES=(referrald.8 referralctl.1 referrald.conf.5)

fail() {
	echo "FAIL: $*" >&2
	exit 1
}
skip() {
	echo "SKIP: $*"
	exit 77
}
ok() { echo "ok: $*"; }

# need TOOL DEBIAN_PACKAGE...
need() {
	command -v "$1" >/dev/null 2>&1 || skip "$1 is not installed (Debian package: $2)"
}

LAYOUT=$BUILD/packaging/layout.env
[[ -f $LAYOUT ]] || fail "$LAYOUT is missing: the top-level CMakeLists.txt must have the install and packaging section"
# shellcheck source=/dev/null
. "$LAYOUT"

test_name=${1:?usage: check_packaging.sh TEST}
mkdir -p "${REFERRAL_PKG_TMP:-/tmp}"
tmp=$(mktemp -d "${REFERRAL_PKG_TMP:-/tmp}/$test_name.XXXXXX")
cleanup() {
	local rc=$?
	if [[ $rc -eq 0 || $rc -eq 77 ]]; then
		rm -rf "$tmp"
	else
		echo "(files kept in $tmp)" >&2
	fi
}
trap cleanup EXIT

# The value of KEY= in a unit file (last one wins, as in systemd).
unit_value() {
	sed -n "s/^$2=//p" "$1" | tail -n 1
}

# Seconds in a systemd time span of the simple forms "30", "30s", "2min".
span_seconds() {
	case $1 in
	*min) echo $((${1%min} * 60)) ;;
	*ms) echo $((${1%ms} / 1000)) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}

# The default of a setting, from the binary's --help-config.
setting_default() {
	"$REFERRALD" --help-config | sed -n "s/^$1 = //p"
}

# A man tree holding the pages from docs/man, for MANPATH.
make_man_tree() {
	local page sec
	for page in "${PAGES[@]}"; do
		sec=${page##*.}
		mkdir -p "$1/man$sec"
		cp "$SRC/docs/man/$page" "$1/man$sec/"
	done
}

# ---- units: systemd-analyze verify and security ---------------------------
t_units() {
	need systemd-analyze systemd
	local svc=$SRC/systemd/referrald.service sock=$SRC/systemd/referrald.socket

	# What the issue asks of the service, so that a later edit cannot drop it.
	local key want
	while IFS='|' read -r key want; do
		[[ $(unit_value "$svc" "$key") == "$want" ]] ||
			fail "referrald.service: want $key=$want, have '$(unit_value "$svc" "$key")'"
	done <<-'EOF'
		Type|notify
		ExecStart|/usr/sbin/referrald -c /etc/referrald/referrald.conf
		ExecReload|/bin/kill -HUP $MAINPID
		Restart|on-failure
		User|referrald
		Group|referrald
		NoNewPrivileges|yes
		ProtectSystem|strict
		ProtectHome|yes
		PrivateTmp|yes
		PrivateDevices|yes
		CapabilityBoundingSet|
		RestrictAddressFamilies|AF_INET AF_INET6 AF_UNIX
		MemoryDenyWriteExecute|yes
		SystemCallArchitectures|native
		UMask|0077
	EOF
	grep -q '^SystemCallFilter=@system-service$' "$svc" || fail "referrald.service: no SystemCallFilter=@system-service"
	[[ -n $(unit_value "$svc" WatchdogSec) ]] || fail "referrald.service: no WatchdogSec="
	# The daemon copes with the database being down: wanted, never required.
	unit_value "$svc" Wants | grep -qw postgresql.service || fail "referrald.service: Wants= lacks postgresql.service"
	unit_value "$svc" After | grep -qw postgresql.service || fail "referrald.service: After= lacks postgresql.service"
	if grep -E '^(Requires|BindsTo|Requisite)=.*postgresql' "$svc"; then
		fail "referrald.service must not require postgresql.service"
	fi
	# PostgreSQL may be on any host.
	if grep -E '^IPAddressDeny=' "$svc"; then
		fail "referrald.service: IPAddressDeny= would cut the daemon off its database"
	fi
	[[ $(unit_value "$sock" ListenStream) == 127.0.0.1:7420 ]] || fail "referrald.socket: want ListenStream=127.0.0.1:7420"

	# systemd must give a drain its full shutdown_timeout_ms, and the file
	# limit must hold max_connections plus the database pool.
	local stop_s drain_ms nofile conns
	stop_s=$(span_seconds "$(unit_value "$svc" TimeoutStopSec)")
	drain_ms=$(setting_default shutdown_timeout_ms)
	((stop_s * 1000 > drain_ms)) || fail "TimeoutStopSec=${stop_s}s is not above shutdown_timeout_ms=$drain_ms"
	nofile=$(unit_value "$svc" LimitNOFILE)
	conns=$(setting_default max_connections)
	((nofile > conns + 256 + 64)) || fail "LimitNOFILE=$nofile does not hold max_connections=$conns"
	ok "unit settings"

	# verify wants the ExecStart binary to exist: the build tree's stands in.
	mkdir -p "$tmp/units" "$tmp/man"
	sed "s#/usr/sbin/referrald#$REFERRALD#" "$svc" >"$tmp/units/referrald.service"
	cp "$sock" "$tmp/units/referrald.socket"
	local man_opt=--man=yes
	if command -v man >/dev/null 2>&1; then
		make_man_tree "$tmp/man"
	else
		echo "note: man is not installed; Documentation= is not checked (Debian package: man-db)"
		man_opt=--man=no
	fi
	(cd "$tmp/units" && MANPATH=$tmp/man systemd-analyze verify "$man_opt" \
		./referrald.socket ./referrald.service) >"$tmp/verify.out" 2>&1 ||
		{ cat "$tmp/verify.out" >&2; fail "systemd-analyze verify failed"; }
	if [[ -s $tmp/verify.out ]]; then
		cat "$tmp/verify.out" >&2
		fail "systemd-analyze verify complained"
	fi
	ok "systemd-analyze verify referrald.socket referrald.service"

	local rc=0 line
	(cd "$tmp/units" && systemd-analyze security --offline=yes \
		--threshold=$MAX_EXPOSURE_TENTHS ./referrald.service) >"$tmp/security.out" 2>&1 || rc=$?
	line=$(grep 'Overall exposure level' "$tmp/security.out" || true)
	[[ -n $line ]] || { cat "$tmp/security.out" >&2; fail "no exposure level from systemd-analyze security"; }
	echo "$line"
	if [[ $rc -ne 0 ]]; then
		grep '✗' "$tmp/security.out" >&2 || true
		fail "exposure above $((MAX_EXPOSURE_TENTHS / 10)).$((MAX_EXPOSURE_TENTHS % 10))"
	fi
	ok "exposure at most $((MAX_EXPOSURE_TENTHS / 10)).$((MAX_EXPOSURE_TENTHS % 10))"

	# The units the build installs are the same, with the prefix's paths.
	local unit
	for unit in referrald.service referrald.socket; do
		sed -e "s#/usr/sbin/referrald#$SBINDIR/referrald#g" -e "s#/etc/referrald/#$CONFDIR/#g" \
			"$SRC/systemd/$unit" | diff -u - "$BUILD/packaging/units/$unit" >&2 ||
			fail "$BUILD/packaging/units/$unit is stale: re-run cmake"
	done
	ok "generated units match systemd/"
}

# ---- manpages: render cleanly, and cover every option, command, setting ----
# Rendered tag lines start with 7 spaces.
render() {
	MANWIDTH=80 man --warnings -l "$1" 2>"$tmp/man.err"
}

t_manpages() {
	need man man-db
	need groff groff-base
	local page out
	for page in "${PAGES[@]}"; do
		out=$tmp/$page.txt
		LC_ALL=C.UTF-8 groff -man -ww -z "$SRC/docs/man/$page" 2>"$tmp/groff.err" ||
			fail "groff failed on $page"
		[[ -s $tmp/groff.err ]] && { cat "$tmp/groff.err" >&2; fail "groff warns about $page"; }
		render "$SRC/docs/man/$page" >"$out" || fail "man -l $page failed"
		[[ -s $tmp/man.err ]] && { cat "$tmp/man.err" >&2; fail "man warns about $page"; }
		grep -q '^NAME$' "$out" || fail "$page has no NAME section"
		grep -q '^SEE ALSO$' "$out" || fail "$page has no SEE ALSO section"
	done
	ok "pages render without warnings"

	# referrald(8): every option of --help, the signals, the exit status.
	out=$tmp/referrald.8.txt
	local opt
	for opt in $("$REFERRALD" --help | grep -oE '^ +(-[A-Za-z], )?--[a-z-]+' | grep -oE -- '-[A-Za-z]\b|--[a-z-]+'); do
		grep -qE -- "^ {7}(-[A-Za-z], )?$opt([ ,]|\$)" "$out" || fail "referrald.8 does not document $opt"
	done
	for opt in SIGTERM SIGINT SIGHUP 'EXIT STATUS' FILES /etc/referrald/referrald.conf /etc/referrald/pgpass; do
		grep -qF -- "$opt" "$out" || fail "referrald.8 does not mention $opt"
	done
	ok "referrald.8 covers referrald --help"

	# referrald.conf(5): every setting, with the binary's default and reload class.
	out=$tmp/referrald.conf.5.txt
	local name def class want
	while IFS='|' read -r name def class; do
		[[ -n $def ]] || def=empty
		want=restart
		[[ $class == *SIGHUP* ]] && want=live
		grep -qF "       $name (default $def" "$out" ||
			fail "referrald.conf.5: no '$name (default $def' (the binary's default)"
		grep -E "^ {7}$name \(default " "$out" | grep -q ", $want)" ||
			fail "referrald.conf.5: $name should be marked $want"
	done < <("$REFERRALD" --help-config | awk '
		/^# default: / { split($0, a, "; "); class = a[2] }
		/^[a-z_]+ = / { v = $0; sub(/^[a-z_]+ = /, "", v); print $1 "|" v "|" class }')
	ok "referrald.conf.5 covers referrald --help-config"

	# referralctl(1): every global option, command, exit code and variable.
	out=$tmp/referralctl.1.txt
	local help cmd code var
	help=$("$REFERRALCTL" --help)
	while read -r opt; do
		grep -qE -- "^ {7}$opt( |\$)" "$out" || fail "referralctl.1 does not document $opt"
	done < <(grep -oE '^  -[A-Za-z], --[a-z-]+' <<<"$help" | sed 's/^  //')
	for cmd in $(sed -n '/^commands:/,/^$/p' <<<"$help" | grep -oE '^  [a-z][a-z-]*'); do
		grep -qE "^ {7}$cmd( |\$)" "$out" || fail "referralctl.1 does not document the command $cmd"
	done
	for code in $(grep -oE 'exit codes:.*' <<<"$help" | grep -oE '\b[0-9]\b'); do
		grep -qE "^ {7}$code {6}[A-Z]" "$out" || fail "referralctl.1 does not document exit status $code"
	done
	for var in $(grep -oE 'REFERRAL_[A-Z]+' <<<"$help" | sort -u); do
		grep -qE "^ {7}$var\$" "$out" || fail "referralctl.1 does not document $var"
	done
	ok "referralctl.1 covers referralctl --help"
}

# ---- conffile: the shipped configuration is valid and complete --------------
t_conffile() {
	local example=$SRC/systemd/referrald.conf.example
	[[ -f $example ]] || fail "$example is missing"
	"$REFERRALD" -c "$example" --check-config >"$tmp/example.out" 2>&1 ||
		{ cat "$tmp/example.out" >&2; fail "the example configuration does not load"; }
	ok "referrald --check-config accepts referrald.conf.example"
	local name
	for name in $("$REFERRALD" --help-config | sed -n 's/^\([a-z_]*\) = .*/\1/p'); do
		grep -qE "^$name =" "$example" || fail "referrald.conf.example does not set $name"
	done
	ok "every setting is in referrald.conf.example"
	# It says every value is the default: installing it changes nothing.
	"$REFERRALD" --check-config >"$tmp/defaults.out"
	diff -u "$tmp/defaults.out" "$tmp/example.out" >&2 ||
		fail "referrald.conf.example differs from the built-in defaults"
	ok "referrald.conf.example holds the defaults"
}

# ---- maintainer_scripts: syntax, and what they do (with stubbed commands) --
# Stubs log "name args" to $tmp/calls; getent knows the user if $tmp/user exists.
make_stubs() {
	local bin=$tmp/stubs c
	mkdir -p "$bin"
	for c in adduser useradd groupadd deluser delgroup userdel groupdel chown chmod rm systemctl; do
		printf '#!%s\necho "%s $*" >>"%s/calls"\n' "$SH" "$c" "$tmp" >"$bin/$c"
	done
	printf '#!%s\necho "dpkg-statoverride $*" >>"%s/calls"\nexit 1\n' "$SH" "$tmp" >"$bin/dpkg-statoverride"
	printf '#!%s\n[ -e "%s/user" ]\n' "$SH" "$tmp" >"$bin/getent"
	chmod +x "$bin"/*
}

# run_script SCRIPT ARGS...: with only the stubs on PATH; the log in $tmp/calls.
run_script() {
	local script=$1
	shift
	: >"$tmp/calls"
	PATH=$tmp/stubs "$SH" -e "$BUILD/packaging/deb/$script" "$@" >"$tmp/script.out" 2>&1
}

called() { grep -qE -- "$1" "$tmp/calls"; }

t_maintainer_scripts() {
	SH=$(command -v dash || command -v sh)
	local s
	for s in postinst prerm postrm; do
		local f=$BUILD/packaging/deb/$s
		[[ -x $f ]] || fail "$f is missing or not executable"
		[[ $(head -n 1 "$f") == '#!/bin/sh' ]] || fail "$s: not a #!/bin/sh script"
		"$SH" -n "$f" || fail "$s: syntax error"
		grep -q '@[A-Z_]*@' "$f" && fail "$s: unsubstituted @VARIABLE@"
	done
	[[ $(cat "$BUILD/packaging/deb/conffiles") == "$CONFDIR/referrald.conf" ]] ||
		fail "conffiles should list $CONFDIR/referrald.conf"
	ok "syntax ($SH -n), conffiles"

	make_stubs
	local systemd=no
	[[ -d /run/systemd/system ]] && systemd=yes

	# First install, no user yet: adduser makes a system user and group.
	rm -f "$tmp/user"
	run_script postinst configure "" || { cat "$tmp/script.out"; fail "postinst configure failed"; }
	called '^adduser --system .*--group .*--no-create-home .* referrald$' ||
		{ cat "$tmp/calls"; fail "postinst did not create the system user"; }
	if [[ -e $CONFDIR ]]; then
		called "^chown root:referrald $CONFDIR\$" || fail "postinst did not chown $CONFDIR"
		called "^chmod 0750 $CONFDIR\$" || fail "postinst did not chmod $CONFDIR"
	fi
	if [[ $systemd == yes ]]; then
		called '^systemctl daemon-reload' || fail "postinst did not reload systemd"
	else
		called '^systemctl' && fail "postinst called systemctl without a running systemd"
	fi
	called '^systemctl (try-)?restart' && fail "postinst restarted the service on first install"
	ok "postinst configure (new user, adduser)"

	# Without adduser: groupadd and useradd.
	rm "$tmp/stubs/adduser"
	run_script postinst configure "" || { cat "$tmp/script.out"; fail "postinst configure failed"; }
	called '^groupadd --system referrald$' || { cat "$tmp/calls"; fail "postinst did not groupadd"; }
	called '^useradd --system .*referrald$' || { cat "$tmp/calls"; fail "postinst did not useradd"; }
	ok "postinst configure (new user, useradd)"

	# Upgrade, the user exists: no new user; a running service is restarted.
	touch "$tmp/user"
	run_script postinst configure 0.0.1-1 || { cat "$tmp/script.out"; fail "postinst upgrade failed"; }
	called '^(adduser|useradd|groupadd)' && fail "postinst recreated an existing user"
	if [[ $systemd == yes ]]; then
		called '^systemctl try-restart referrald.service$' || fail "postinst upgrade did not try-restart"
	fi
	ok "postinst configure (upgrade)"

	run_script postinst bogus && fail "postinst accepted an unknown action"
	run_script prerm remove || fail "prerm remove failed"
	if [[ $systemd == yes ]]; then
		called '^systemctl stop referrald.socket referrald.service$' || fail "prerm remove did not stop"
	else
		called '^systemctl' && fail "prerm called systemctl without a running systemd"
	fi
	run_script prerm upgrade 0.2.0-1 || fail "prerm upgrade failed"
	called '^systemctl stop' && fail "prerm stopped the service on upgrade"
	ok "prerm"

	run_script postrm remove || fail "postrm remove failed"
	called '^(rm|deluser|userdel)' && fail "postrm remove deleted something"
	run_script postrm purge || { cat "$tmp/script.out"; fail "postrm purge failed"; }
	called "^rm -rf $CONFDIR\$" || { cat "$tmp/calls"; fail "postrm purge kept $CONFDIR"; }
	called '^deluser --system --quiet referrald$' || fail "postrm purge kept the user"
	called '^delgroup --system --quiet referrald$' || fail "postrm purge kept the group"
	rm "$tmp/stubs/deluser" "$tmp/stubs/delgroup"
	run_script postrm purge || fail "postrm purge (no deluser) failed"
	called '^userdel referrald$' || fail "postrm purge without deluser kept the user"
	run_script postrm upgrade 0.2.0-1 || fail "postrm upgrade failed"
	ok "postrm"
}

# ---- deb: build the package with cpack and inspect it -----------------------
t_deb() {
	need cpack cmake
	need dpkg-deb dpkg
	need dpkg-shlibdeps dpkg-dev
	need file file
	[[ -f $BUILD/CPackConfig.cmake ]] || fail "$BUILD/CPackConfig.cmake is missing"
	(cd "$tmp" && cpack --config "$BUILD/CPackConfig.cmake" -G DEB -B "$tmp/out") >"$tmp/cpack.log" 2>&1 ||
		{ cat "$tmp/cpack.log" >&2; fail "cpack -G DEB failed"; }
	local debs=("$tmp"/out/*.deb)
	[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || fail "cpack made ${#debs[@]} packages"
	local deb=${debs[0]}
	echo "built $(basename "$deb")"

	# Control fields.
	[[ $(dpkg-deb -f "$deb" Package) == referrald ]] || fail "Package is not referrald"
	[[ $(dpkg-deb -f "$deb" Version) == "$VERSION"-* ]] || fail "Version is not $VERSION-*"
	[[ $(dpkg-deb -f "$deb" Architecture) == "$(dpkg --print-architecture)" ]] || fail "wrong Architecture"
	local depends dep
	depends=$(dpkg-deb -f "$deb" Depends)
	echo "Depends: $depends"
	for dep in libc6 libevent-core libpq5 libprotobuf-c libssl libinih libjson-c libsystemd0 'adduser | passwd'; do
		[[ $depends == *"$dep"* ]] || fail "Depends lacks $dep"
	done
	[[ $(dpkg-deb -f "$deb" Recommends) == *postgresql-client* ]] || fail "Recommends lacks postgresql-client"
	dpkg-deb -f "$deb" Maintainer | grep -q . || fail "no Maintainer"
	ok "control fields"

	# Maintainer scripts and conffiles.
	dpkg-deb --ctrl-tarfile "$deb" | tar -tvf - >"$tmp/control.lst"
	local s
	for s in postinst prerm postrm; do
		grep -qE "^-rwxr-xr-x .* \./$s\$" "$tmp/control.lst" || fail "$s missing or not 0755 in the package"
	done
	mkdir -p "$tmp/control"
	dpkg-deb -e "$deb" "$tmp/control"
	[[ $(cat "$tmp/control/conffiles") == "$CONFDIR/referrald.conf" ]] || fail "conffiles is not $CONFDIR/referrald.conf"
	ok "maintainer scripts, conffiles"

	# Files: everything expected, nothing outside the expected places.
	dpkg-deb -c "$deb" >"$tmp/contents.lst"
	awk '$1 ~ /^-/ { print $6 }' "$tmp/contents.lst" | sed 's#^\.##' | sort >"$tmp/files.lst"
	local want=(
		"$SBINDIR/referrald" "$BINDIR/referralctl"
		"$UNITDIR/referrald.service" "$UNITDIR/referrald.socket"
		"$CONFDIR/referrald.conf"
		"$MANDIR/man8/referrald.8.gz" "$MANDIR/man1/referralctl.1.gz" "$MANDIR/man5/referrald.conf.5.gz"
		"$DOCDIR/referrald.conf.example" "$DOCDIR/operations.md"
	)
	local f
	for f in "$SRC"/sql/[0-9]*.sql; do want+=("$DATADIR/sql/$(basename "$f")"); done
	for f in "$SRC"/sql/demo/*.sql; do want+=("$DATADIR/sql/demo/$(basename "$f")"); done
	for f in "${want[@]}"; do
		grep -qxF "$f" "$tmp/files.lst" || fail "the package lacks $f"
	done
	for f in "$SBINDIR/referrald" "$BINDIR/referralctl"; do
		grep -qE "^-rwxr-xr-x root/root .* \.$f\$" "$tmp/contents.lst" || fail "$f is not root-owned 0755"
	done
	local stray
	stray=$(grep -vE "^($SBINDIR/referrald|$BINDIR/referralctl|$UNITDIR/referrald\.(service|socket)|$CONFDIR/referrald\.conf|$MANDIR/man[158]/[a-z0-9.]+\.gz|$DATADIR/sql/.*\.sql|$DOCDIR/.*)\$" \
		"$tmp/files.lst" || true)
	[[ -z $stray ]] || fail "unexpected files in the package: $stray"
	ok "package contents ($(wc -l <"$tmp/files.lst") files)"

	# What was packaged works and is what the sources say.
	dpkg-deb -x "$deb" "$tmp/root"
	local root=$tmp/root
	"$root$SBINDIR/referrald" -V | grep -q "^referrald $VERSION " || fail "packaged referrald -V"
	"$root$BINDIR/referralctl" --help >/dev/null || fail "packaged referralctl --help"
	cmp "$root$CONFDIR/referrald.conf" "$SRC/systemd/referrald.conf.example" ||
		fail "the conffile is not systemd/referrald.conf.example"
	cmp "$root$DOCDIR/referrald.conf.example" "$SRC/systemd/referrald.conf.example" || fail "doc example differs"
	[[ $(unit_value "$root$UNITDIR/referrald.service" ExecStart) == "$SBINDIR/referrald -c $CONFDIR/referrald.conf" ]] ||
		fail "packaged unit: ExecStart does not run $SBINDIR/referrald with $CONFDIR/referrald.conf"
	local page sec
	for page in "${PAGES[@]}"; do
		sec=${page##*.}
		gzip -dc "$root$MANDIR/man$sec/$page.gz" | cmp - "$SRC/docs/man/$page" || fail "packaged $page differs"
	done
	ok "packaged binaries run; conffile, unit and pages as in the sources"

	if command -v systemd-analyze >/dev/null 2>&1; then
		local rc=0
		systemd-analyze security --root="$root" --offline=yes --threshold=$MAX_EXPOSURE_TENTHS \
			referrald.service >"$tmp/security.out" 2>&1 || rc=$?
		grep 'Overall exposure level' "$tmp/security.out" || { cat "$tmp/security.out" >&2; fail "no exposure level"; }
		[[ $rc -eq 0 ]] || fail "packaged unit: exposure above the limit"
		ok "packaged unit: systemd-analyze security"
	fi
}

case $test_name in
units) t_units ;;
manpages) t_manpages ;;
conffile) t_conffile ;;
maintainer_scripts) t_maintainer_scripts ;;
deb) t_deb ;;
*) fail "unknown test '$test_name'" ;;
esac
