# SPDX-License-Identifier: BSD-2-Clause
# tests/tpm/lib.sh - a software TPM for the TPM tests (sourced after
# tests/integration/lib.sh, whose kg_init/stop_all own every process started here).
#
# The swtpm TCTI talks to port N (commands) and N+1 (control): port_pair finds both free.
# start_swtpm: swtpm on free loopback ports (restart_swtpm: again on the same ones), state under $WORK/swtpm (an absolute path:
#   swtpm --daemon would chdir to / and fail on its first write otherwise; we do not
#   daemonize, so the PID is ours to stop). Sets SWTPM_PORT, SWTPM_CTRL, SWTPM_PID and
#   SWTPM_TCTI (the swtpm TCTI string for tpm2-tss).
# start_tpmproxy: tests/tpm/tpmproxy.py in front of it, recording every TPM command code
#   in $TPMLOG; sets PROXY_PORT, PROXY_PID and PROXY_TCTI. ktlsgated talks through it.
# tpm_transients: number of transient objects loaded now (tpm2_getcap, direct to swtpm;
#   swtpm serves one connection at a time, so only with no daemon holding it).

KG_TPM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

port_pair() {
	local p i
	for ((i = 0; i < 50; i++)); do
		p=$(free_port)
		if [ "$p" -lt 65535 ] && port_free "$((p + 1))"; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

start_swtpm() {
	SWTPM_PORT=$(port_pair) || return 1
	SWTPM_CTRL=$((SWTPM_PORT + 1))
	run_swtpm
}

# restart_swtpm: swtpm again on the same ports and state (persistent keys survive;
# transient objects do not), after it was killed (tests of a TPM that comes back).
restart_swtpm() {
	run_swtpm
}

run_swtpm() {
	local dir="$WORK/swtpm" i
	mkdir -p "$dir/state"
	swtpm socket --tpm2 --tpmstate dir="$dir/state" \
		--server type=tcp,port="$SWTPM_PORT",bindaddr=127.0.0.1 \
		--ctrl type=tcp,port="$SWTPM_CTRL",bindaddr=127.0.0.1 \
		--flags not-need-init,startup-clear --log file="$dir/swtpm.log" >"$dir/out.log" 2>&1 &
	SWTPM_PID=$!
	KG_PIDS+=("$SWTPM_PID")
	SWTPM_TCTI="swtpm:host=127.0.0.1,port=$SWTPM_PORT"
	for ((i = 0; i < 100; i++)); do
		[ -n "$(ss -Hltn "sport = :$SWTPM_PORT" 2>/dev/null)" ] && return 0
		kill -0 "$SWTPM_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "swtpm did not start:" >&2
	cat "$dir/out.log" "$dir/swtpm.log" >&2 2>/dev/null
	return 1
}

stop_swtpm() {
	[ -n "${SWTPM_PID:-}" ] || return 0
	kill "$SWTPM_PID" 2>/dev/null || true
	timeout 5 tail --pid="$SWTPM_PID" -f /dev/null 2>/dev/null || kill -9 "$SWTPM_PID" 2>/dev/null || true
	forget_pid "$SWTPM_PID"
	SWTPM_PID=""
}

start_tpmproxy() {
	TPMLOG="$WORK/tpm-commands.log"
	: >"$TPMLOG"
	PROXY_PORT=$(port_pair) || return 1
	$PY "$KG_TPM_DIR/tpmproxy.py" --listen "$PROXY_PORT" --upstream "$SWTPM_PORT" \
		--ctrl-upstream "$SWTPM_CTRL" \
		--log "$TPMLOG" "$@" >"$WORK/tpmproxy.log" 2>&1 &
	PROXY_PID=$!
	KG_PIDS+=("$PROXY_PID")
	PROXY_TCTI="swtpm:host=127.0.0.1,port=$PROXY_PORT"
	wait_port "$PROXY_PORT" 10 "$PROXY_PID"
}

# tpm_transients: how many transient objects the TPM holds. Fails (prints nothing,
# returns 1) when tpm2_getcap itself fails, so a "none left" check cannot pass on a
# TPM that did not answer; an empty list is a successful 0.
tpm_transients() {
	local out
	out=$(timeout 10 tpm2_getcap -T "$SWTPM_TCTI" handles-transient 2>/dev/null) || return 1
	grep -c '0x' <<<"$out" || [ $? -eq 1 ]
}

# tpm_cmds_since MARK: the command codes (hex) logged after line MARK of $TPMLOG.
tpm_cmds_since() {
	tail -n +"$(($1 + 1))" "$TPMLOG"
}

tpm_mark() {
	wc -l <"$TPMLOG"
}
