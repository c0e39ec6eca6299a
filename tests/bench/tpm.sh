#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# tpm.sh - `make bench-tpm` (issue 13): the TPM key against a reconnect storm. Side by
# side in one run, in front of one mosquitto, ECDSA P-256 everywhere, TLS 1.3 mTLS:
#   file          ktlsgated, server key in a PEM file
#   tpm-direct    ktlsgated, key in swtpm at a persistent handle: one TPM2_Sign per
#                 full handshake, through tests/tpm/tpmproxy.py adding SIGN_DELAY_MS
#                 (50 ms: what a discrete TPM costs) to every TPM2_Sign
#   tpm-leaf      ktlsgated, [tpm] mode = certified-leaf: the TPM key (its certificate
#                 a CA: CA:TRUE, pathlen:0, keyCertSign) signs a short-lived in-memory
#                 leaf at start, handshakes never touch the TPM
#   file-resumed  the file daemon with [tls] resumption = on, kg-bench --resume: every
#                 connection offers its device's TLS 1.3 ticket
#   leaf-resumed  tpm-leaf with resumption on, kg-bench --resume
#   cache-resumed the file daemon with [tls] session_cache = 100000 (the sessions kept
#                 in memory, tls/session_cache.h), kg-bench --resume
#   file-cache    the same daemon, full handshakes: what a full handshake costs when its
#                 ticket is a session id (no session encoded into a ticket)
#   file-nofast   file-cache with [tls] fast_ec_decode = no: OpenSSL 3.0's own decoders
#                 for the devices' EC keys (tls/ec_decode.h), beside it in the same run
#   leaf-cache-resumed  tpm-leaf with [tls] session_cache = 100000, kg-bench --resume
#   file-pskke    file-resumed with [tls] resumption_psk_ke = prefer, kg-bench --resume
#                 --psk-ke: resumptions without ECDHE (needs OpenSSL >= 3.2: NOT RUN on 3.0)
#   cache-pskke   cache-resumed with the same
#   gnutls-full   the file daemon, full handshakes by GnuTLS's client (kg-gtls-bench;
#                 TLS only: no MQTT whatever HS_TLS_ONLY says; no storm)
#   gnutls-resumed  the same daemon and client, --resume (GnuTLS offers psk_dhe_ke and
#                 psk_ke: the daemon runs ECDHE)
#   gnutls-pskke  the daemon with [tls] resumption_psk_ke = allow, GnuTLS's client
#                 offering psk_ke alone: resumptions without ECDHE on any OpenSSL
#   nginx         nginx 1.22 stream, file key: the full-handshake CPU reference
#   nginx-resumed the same nginx, kg-bench --resume (nginx's default stateless TLS 1.3
#                 tickets): the peer's own resumed / full ratios, beside ours
# Per variant: full (or resumed) handshakes/s and server CPU per handshake (kg-bench
# handshake, the server's CPU over the measured phase only: --server-pids), and the
# time for a storm of STORM_N (5000) devices, all connecting at once, to be connected
# (kg-bench storm: failed attempts retried after 0.5-1 s, each attempt given
# STORM_TIMEOUT_MS, the storm cut at STORM_LIMIT s). A fresh server per measurement;
# the variants interleaved: BENCH_REPEAT handshake rounds, then the storm rounds, each
# running every variant once, in reverse order every other round.
# A variant whose config this ktlsgated rejects (`ktlsgated -t`: the feature is not
# merged) is reported "NOT RUN: <why>", never with a number. Exit status: 1 if any
# measurement had errors, 3 if none did but some variant did not run, else 0.
# Everything on 127.0.0.1; every process started here is stopped on exit.
# Knobs and output: tests/bench/README.md; numbers: docs/benchmarks.md "Issue 13".
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# bench_paths, free_port, free_port_pair, start_bg, stop_bg, wait_listen, proc_tree,
# plain_broker_conf, json_get, calc
# shellcheck source=tests/bench/lib.sh
. "$HERE/lib.sh"
bench_paths bench-tpm   # ROOT, BUILD, OUT, KG_BENCH, KTLSGATE, KTLSGATED
KG_GTLS_BENCH=$BUILD/kg-gtls-bench   # the gnutls-* variants' client

# The command as given (the knobs set in the environment), for the report.
CMDLINE="make bench-tpm"
for v in BENCH_QUICK BENCH_REPEAT BENCH_THREADS BENCH_VARIANTS HS_COUNT HS_CONC HS_COUNT_TPM HS_CONC_TPM HS_TLS_ONLY \
	STORM_N STORM_LIMIT STORM_TIMEOUT_MS STORM_REPEAT_DIRECT SIGN_DELAY_MS TPM_WORKERS GATED_TIMEOUT_MS; do
	if [[ -n ${!v:-} ]]; then CMDLINE+=" $v=${!v@Q}"; fi
done
if [[ ${BENCH_QUICK:-0} == 1 ]]; then
	: "${BENCH_REPEAT:=1}" "${HS_COUNT:=300}" "${HS_COUNT_TPM:=40}" "${STORM_N:=500}"
	: "${STORM_LIMIT:=60}"
fi
REPEAT=${BENCH_REPEAT:-3}
HS_COUNT=${HS_COUNT:-3000}             # handshakes per measured run
HS_CONC=${HS_CONC:-50}                 # in flight
# tpm-direct: 20 signatures/s at 50 ms; 10 in flight keep the TPM busy without queueing
# past a signer's default deadline (1 s); 200 handshakes take 10 s
HS_COUNT_TPM=${HS_COUNT_TPM:-200}
HS_CONC_TPM=${HS_CONC_TPM:-10}
STORM_N=${STORM_N:-5000}               # devices in a storm
STORM_LIMIT=${STORM_LIMIT:-120}        # s: the storm is cut here (the tpm-direct cap)
STORM_TIMEOUT_MS=${STORM_TIMEOUT_MS:-30000}  # one attempt (a typical MQTT client's 30 s)
# ktlsgated's handshake_timeout_ms and connect_timeout_ms (default 10 s): raised to the
# devices' own attempt timeout. Here the 5000 clients' crypto runs on the server's 2
# CPUs (a fleet's does not); with 10 s a file-key storm on a loaded host tipped into a
# collapse of timed-out, retried handshakes in one run of three (2029 of 5000 in 120 s).
GATED_TIMEOUT_MS=${GATED_TIMEOUT_MS:-$STORM_TIMEOUT_MS}
STORM_REPEAT_DIRECT=${STORM_REPEAT_DIRECT:-1}  # tpm-direct storms last STORM_LIMIT each
SIGN_DELAY_MS=${SIGN_DELAY_MS:-50}
WORKERS=2                              # ktlsgated workers (and nginx's, in nginx.conf.in)
TPM_WORKERS=${TPM_WORKERS:-$WORKERS}   # for the TPM variants (1: one signer at a time)
THREADS=${BENCH_THREADS:-1}
VARIANTS=${BENCH_VARIANTS:-"file tpm-direct tpm-leaf file-resumed cache-resumed leaf-resumed nginx"}
N_DEVICES=$STORM_N
((N_DEVICES >= HS_COUNT)) || N_DEVICES=$HS_COUNT
HANDLE=0x81000101

PKI=$OUT/pki
RUN=$OUT/run
LOGS=$OUT/logs
RAW=$OUT/raw.tsv
RESULTS=$OUT/results.md

declare -a PIDS=()
USED_PORTS=" "
ERRORS=0
declare -A NOT_RUN=()     # variant -> why
declare -A CONF_NOTE=()   # variant -> the [tpm]/[tls] lines it ran with
FAILED_WARMUP=""          # variants left out after a failed warm-up

say() { printf '[bench-tpm %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

cleanup() {
	local rc=$? pid
	for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]+"${PIDS[@]}"}"; do
		timeout 5 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RAW"; }
median() {   # median VARIANT METRIC (empty if never measured)
	awk -F'\t' -v t="$1" -v m="$2" '$1 == t && $2 == m { print $4 }' "$RAW" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2];
			else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
total() { awk -F'\t' -v t="$1" -v m="$2" '$1 == t && $2 == m { s += $4 } END { print s + 0 }' "$RAW"; }
fmt() { [[ -n ${1:-} ]] && printf '%s' "$1" || printf 'n/a'; }
variant_on() { [[ " $VARIANTS " == *" $1 "* ]]; }

# ---- PKI: root -> factory -> dev-NNNNN; root -> server-ca -> the file key's server
# certificate, so that the file key's chain has the shape of certified-leaf's (leaf + the
# TPM key's CA certificate): two certificates sent, two signatures for a device to check.
make_pki() {
	local i have=0 layout=""
	[[ -f $PKI/.stamp ]] && { read -r have layout <"$PKI/.stamp" || true; }
	if ((have >= N_DEVICES)) && [[ $layout == server-ca ]] &&
		openssl x509 -checkend 86400 -noout -in "$PKI/devices/dev-00000/cert.pem" >/dev/null 2>&1; then
		say "PKI: reusing $PKI"
		return 0
	fi
	rm -rf "$PKI"
	mkdir -p "$PKI/devices"
	say "PKI: root, factory, server, $N_DEVICES devices"
	"$KTLSGATE" pki root --cn "bench-tpm-root" --out "$PKI/root" >/dev/null
	"$KTLSGATE" pki intermediate --cn "factory" --ca "$PKI/root" --out "$PKI/factory" >/dev/null
	"$KTLSGATE" pki intermediate --cn "server-ca" --ca "$PKI/root" --out "$PKI/server-ca" >/dev/null
	"$KTLSGATE" pki server --cn localhost --ca "$PKI/server-ca" --out "$PKI/server" >/dev/null
	[[ $(grep -c 'BEGIN CERTIFICATE' "$PKI/server/chain.pem") == 2 ]] ||
		die "$PKI/server/chain.pem is not server + server-ca"
	for ((i = 0; i < N_DEVICES; i++)); do printf 'devices dev-%05d\n' "$i"; done |
		/usr/bin/python3 "$HERE/mkdevices.py" "$PKI" || die "device certificates failed"
	echo "$N_DEVICES server-ca" >"$PKI/.stamp"
}

make_registry() {
	local out code i reg=$RUN/registry.db
	out=$("$KTLSGATE" -r "$reg" ca add "$PKI/root/cert.pem" --name root) || die "ca add: $out"
	code=$(sed -n 's/^challenge: *//p' <<<"$out" | head -1)
	[[ -n $code ]] || die "ca add printed no challenge: $out"
	"$KTLSGATE" pki verification-cert --ca "$PKI/root" --challenge "$code" --out "$RUN/verify.pem" >/dev/null
	"$KTLSGATE" -r "$reg" ca verify root "$RUN/verify.pem" >/dev/null || die "ca verify root"
	{
		echo id
		for ((i = 0; i < N_DEVICES; i++)); do printf 'dev-%05d\n' "$i"; done
	} >"$RUN/devices.csv"
	"$KTLSGATE" -r "$reg" device import "$RUN/devices.csv" >>"$LOGS/registry.log" 2>&1 ||
		die "device import failed (see $LOGS/registry.log)"
	say "registry: root CA verified, $N_DEVICES devices imported"
}

# ---- the software TPM, its key and certificates, the delaying proxy ----------------
SWTPM_PORT="" PROXY_PORT="" TPMLOG=$RUN/tpm-commands.log
start_swtpm() {
	local dir=$RUN/swtpm
	mkdir -p "$dir/state"
	free_port_pair SWTPM_PORT
	start_bg swtpm swtpm socket --tpm2 --tpmstate dir="$dir/state" \
		--server type=tcp,port="$SWTPM_PORT",bindaddr=127.0.0.1 \
		--ctrl type=tcp,port="$((SWTPM_PORT + 1))",bindaddr=127.0.0.1 \
		--flags not-need-init,startup-clear --log file="$dir/swtpm.log"
	wait_listen "$BG_PID" "$SWTPM_PORT" swtpm || die "swtpm did not start (see $LOGS/swtpm.log)"
}

# The TPM key at HANDLE and two certificates for it: a server certificate (direct mode,
# issued by server-ca like the file key's, chain of two) and a CA certificate limited to
# one level, issued by the root (certified-leaf: it issues the daemon's leaf, so the chain
# is leaf + it). Both carry the SAN the clients check (the leaf copies it).
tpm_provision() {
	local tcti="swtpm:host=127.0.0.1,port=$SWTPM_PORT" t=$RUN/tpm
	mkdir -p "$t"
	"$KTLSGATE" tpm keygen --handle "$HANDLE" --tcti "$tcti" >>"$LOGS/tpm.log" 2>&1 ||
		die "tpm keygen failed (see $LOGS/tpm.log)"
	"$KTLSGATE" tpm csr --key "handle:$HANDLE" --cn localhost --out "$t/tpm.csr" --tcti "$tcti" \
		>>"$LOGS/tpm.log" 2>&1 || die "tpm csr failed (see $LOGS/tpm.log)"
	printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
		"extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$t/direct.ext"
	printf '%s\n' "basicConstraints=critical,CA:TRUE,pathlen:0" \
		"keyUsage=critical,keyCertSign,digitalSignature" "subjectKeyIdentifier=hash" \
		"authorityKeyIdentifier=keyid" "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$t/ca.ext"
	for k in direct:server-ca ca:root; do
		openssl x509 -req -in "$t/tpm.csr" -CA "$PKI/${k#*:}/cert.pem" -CAkey "$PKI/${k#*:}/key.pem" \
			-set_serial "0x$(openssl rand -hex 8)" -days 30 -sha256 -extfile "$t/${k%%:*}.ext" \
			-out "$t/${k%%:*}-cert.pem" 2>>"$LOGS/tpm.log" || die "issuing the TPM ${k%%:*} certificate failed"
	done
	cat "$t/direct-cert.pem" "$PKI/server-ca/cert.pem" >"$t/direct-chain.pem"
	say "TPM: P-256 key at $HANDLE; certificates: server (direct), CA pathlen:0 (certified-leaf)"
}

start_tpmproxy() {
	: >"$TPMLOG"
	free_port_pair PROXY_PORT
	start_bg tpmproxy /usr/bin/python3 "$ROOT/tests/tpm/tpmproxy.py" --listen "$PROXY_PORT" \
		--upstream "$SWTPM_PORT" --ctrl-upstream "$((SWTPM_PORT + 1))" --log "$TPMLOG" \
		--sign-delay-ms "$SIGN_DELAY_MS"
	wait_listen "$BG_PID" "$PROXY_PORT" tpmproxy || die "tpmproxy.py did not start"
	say "TPM proxy on $PROXY_PORT: +$SIGN_DELAY_MS ms per TPM2_Sign"
}
tpm_signs() { grep -cx 15d "$TPMLOG" 2>/dev/null || true; }

# ---- servers ---------------------------------------------------------------------
BROKER_PORT=""
start_broker() {
	free_port BROKER_PORT
	plain_broker_conf "$BROKER_PORT" >"$RUN/mosquitto.conf"
	start_bg mosquitto mosquitto -c "$RUN/mosquitto.conf"
	wait_listen "$BG_PID" "$BROKER_PORT" mosquitto || die "mosquitto is not listening on $BROKER_PORT"
}

# variant_conf VARIANT PORT MPORT: ktlsgated's config for the variant. Limits: one
# source (127.0.0.1) for the whole fleet, so the per-source limits are off; room for a
# storm's handshakes; the handshake and CONNECT timeouts GATED_TIMEOUT_MS (above).
variant_conf() {
	local v=$1 key=$PKI/server/key.pem cert=$PKI/server/chain.pem workers=$WORKERS
	case $v in
	tpm-direct) key=handle:$HANDLE cert=$RUN/tpm/direct-chain.pem workers=$TPM_WORKERS ;;
	tpm-leaf | leaf-resumed | leaf-cache-resumed) key=handle:$HANDLE cert=$RUN/tpm/ca-cert.pem workers=$TPM_WORKERS ;;
	esac
	cat <<-EOF
	[daemon]
	listen = 127.0.0.1:$2
	workers = $workers
	cert = $cert
	key = $key
	registry = $RUN/registry.db
	control_socket = $RUN/ctl-$v.sock
	metrics_listen = 127.0.0.1:$3
	default_backend = local
	log_level = warn

	[limits]
	source_max_handshakes = 0
	source_rate = 0
	max_connections = 8000
	max_handshakes = 8000
	handshake_timeout_ms = $GATED_TIMEOUT_MS
	connect_timeout_ms = $GATED_TIMEOUT_MS

	[backend local]
	address = 127.0.0.1:$BROKER_PORT
	EOF
	case $v in
	file-resumed | leaf-resumed) printf '\n[tls]\nresumption = on\n' ;;
	cache-resumed | file-cache | leaf-cache-resumed) printf '\n[tls]\nresumption = on\nsession_cache = 100000\n' ;;
	file-nofast) printf '\n[tls]\nresumption = on\nsession_cache = 100000\nfast_ec_decode = no\n' ;;
	file-pskke) printf '\n[tls]\nresumption = on\nresumption_psk_ke = prefer\n' ;;
	gnutls-pskke) printf '\n[tls]\nresumption = on\nresumption_psk_ke = allow\n' ;;
	cache-pskke) printf '\n[tls]\nresumption = on\nsession_cache = 100000\nresumption_psk_ke = prefer\n' ;;
	esac
	case $v in
	tpm-direct) printf '\n[tpm]\ntcti = swtpm:host=127.0.0.1,port=%s\n' "$PROXY_PORT" ;;
	tpm-leaf | leaf-resumed | leaf-cache-resumed)
		printf '\n[tpm]\ntcti = swtpm:host=127.0.0.1,port=%s\nmode = certified-leaf\n' "$PROXY_PORT" ;;
	esac
}

# variant_check VARIANT: does this ktlsgated accept the variant's config? Else NOT_RUN.
variant_check() {
	local v=$1 conf=$RUN/$1.conf out
	variant_conf "$v" 1 2 >"$conf"
	if ! out=$("$KTLSGATED" -t -c "$conf" 2>&1); then
		NOT_RUN[$v]="ktlsgated -t rejects its config: $(grep -m1 -iE 'unknown|error|invalid|not' <<<"$out" || head -1 <<<"$out")"
		say "NOT RUN: $v: ${NOT_RUN[$v]}"
		return 1
	fi
	printf '%s\n' "$out" >"$LOGS/$v-t.log"
	CONF_NOTE[$v]=$(awk '/^\[(tpm|tls)\]/ { s = $0; next } /^\[/ { s = "" } s != "" && NF { printf "%s %s; ", s, $0 }' "$conf")
	return 0
}

SRV_PID="" SRV_PORT=""
start_variant() {
	local v=$1 mport
	free_port SRV_PORT
	free_port mport
	variant_conf "$v" "$SRV_PORT" "$mport" >"$RUN/$v.conf"
	start_bg "$v" "$KTLSGATED" -c "$RUN/$v.conf"
	SRV_PID=$BG_PID
	wait_listen "$SRV_PID" "$SRV_PORT" "$v" || die "ktlsgated ($v) did not start: see $LOGS/$v.log"
}

start_nginx() {
	free_port SRV_PORT
	mkdir -p "$RUN/nginx"
	sed -e "s|@DIR@|$RUN/nginx|g" -e "s|@PORT@|$SRV_PORT|g" -e "s|@MQTT_PORT@|$BROKER_PORT|g" \
		-e "s|@SERVER_CHAIN@|$PKI/server/chain.pem|g" -e "s|@SERVER_KEY@|$PKI/server/key.pem|g" \
		-e "s|@CA_FILE@|$RUN/clients-ca.pem|g" "$HERE/nginx.conf.in" >"$RUN/nginx/nginx.conf"
	start_bg nginx nginx -p "$RUN/nginx/" -e "$RUN/nginx/nginx-error.log" -c "$RUN/nginx/nginx.conf" -g 'daemon off;'
	SRV_PID=$BG_PID
	wait_listen "$SRV_PID" "$SRV_PORT" nginx || die "nginx did not start: see $LOGS/nginx.log"
}

stop_server() {
	[[ -n $SRV_PID ]] && stop_bg "$SRV_PID"
	SRV_PID=""
}

# ---- measurements ------------------------------------------------------------------
kgb() {
	local pids
	pids=$(proc_tree "$SRV_PID" | paste -sd,)
	"$KG_BENCH" "$1" --target "127.0.0.1:$SRV_PORT" --ca "$PKI/root/cert.pem" \
		--devices "$PKI/devices" -t "$THREADS" --server-pids "$pids" "${@:2}" 2>>"$LOGS/kg-bench.log"
}
# kgg ARGS...: kg-gtls-bench (GnuTLS's client) against the running server.
kgg() {
	local pids
	pids=$(proc_tree "$SRV_PID" | paste -sd,)
	"$KG_GTLS_BENCH" --target "127.0.0.1:$SRV_PORT" --ca "$PKI/root/cert.pem" \
		--devices "$PKI/devices" --server-pids "$pids" "$@" 2>>"$LOGS/kg-gtls-bench.log"
}
# resume_opt VARIANT: kg-bench's and kg-gtls-bench's options for it (the same words)
resume_opt() {
	if [[ $1 == *-resumed ]]; then echo --resume; fi
	if [[ $1 == *-pskke ]]; then echo --resume --psk-ke; fi
}
tls_only_opt() { if [[ ${HS_TLS_ONLY:-0} == 1 ]]; then echo --tls-only; fi; }

hs_run() {   # hs_run VARIANT REP
	local v=$1 rep=$2 out rc=0 n e s0 s1 count=$HS_COUNT conc=$HS_CONC want
	if [[ $v == tpm-direct ]]; then count=$HS_COUNT_TPM conc=$HS_CONC_TPM; fi
	s0=$(tpm_signs)
	# shellcheck disable=SC2046 # each is one word or none
	if [[ $v == gnutls-* ]]; then
		# shellcheck disable=SC2046
		out=$(kgg --count "$count" --concurrency "$conc" $(resume_opt "$v")) || rc=$?
	else
		# shellcheck disable=SC2046
		out=$(kgb handshake --count "$count" --concurrency "$conc" $(resume_opt "$v") $(tls_only_opt)) || rc=$?
	fi
	s1=$(tpm_signs)
	echo "$v handshake $rep $out" >>"$LOGS/kg-bench.json"
	e=$(json_get "$out" errors)
	n=$(json_get "$out" count)
	if [[ -z $e || -z $n ]] || ((e > 0 || n != count)); then
		ERRORS=$((ERRORS + ${e:-1} + (${e:-1} == 0)))
		record "$v" hs_errors "$rep" "${e:-1}"
		say "$v handshake #$rep: ${e:-?} error(s), ${n:-0} of $count, exit $rc (see $LOGS/kg-bench.log)"
		[[ -n $n ]] && ((n > 0)) || return 0
	fi
	record "$v" hs_rate "$rep" "$(json_get "$out" rate)"
	record "$v" hs_cpu_us "$rep" "$(json_get "$out" server_cpu_us)"
	record "$v" hs_p50_ms "$rep" "$(calc "$(json_get "$out" p50_us) / 1000" 2)"
	record "$v" hs_p99_ms "$rep" "$(calc "$(json_get "$out" p99_us) / 1000" 2)"
	record "$v" hs_resumed "$rep" "$(json_get "$out" resumed)"
	record "$v" hs_n "$rep" "$n"
	record "$v" hs_tpm_signs "$rep" "$(calc "($s1 - $s0) / $n" 2)"
	want=""
	if [[ $v == *-resumed || $v == *-pskke ]]; then
		want=", resumed $(json_get "$out" resumed) of $n (primed $(json_get "$out" primed))"
		[[ $v == *-pskke ]] && want="$want, $(json_get "$out" resumed_psk_ke) without ECDHE"
		if [[ $v == *-pskke && $(json_get "$out" resumed_psk_ke) != "$(json_get "$out" resumed)" ]]; then
			NOT_RUN[$v]="resumptions with ECDHE: the daemon did not choose psk_ke"
			say "$v: $(json_get "$out" resumed_psk_ke) of $(json_get "$out" resumed) resumed without ECDHE: not reported"
		fi
		if [[ $(json_get "$out" resumed) == 0 ]]; then
			NOT_RUN[$v]="nothing resumed: the daemon issued no usable ticket (resumption not merged?)"
			say "$v: NOTHING RESUMED: its numbers are full handshakes and are not reported"
		fi
	fi
	say "$v handshake #$rep: $(json_get "$out" rate)/s, server CPU $(json_get "$out" server_cpu_us) us each, TPM2_Sign $((s1 - s0))$want"
}

storm_run() {   # storm_run VARIANT REP (a fresh daemon: nothing left of the last run)
	local v=$1 rep=$2 out rc=0 k kinds="" s0 s1
	start_variant "$v"
	s0=$(tpm_signs)
	# shellcheck disable=SC2046
	out=$(kgb storm --conns "$STORM_N" --deadline "$STORM_LIMIT" --timeout "$STORM_TIMEOUT_MS" \
		$(resume_opt "$v") | grep '^{') || rc=$?
	s1=$(tpm_signs)
	stop_server
	echo "$v storm $rep $out" >>"$LOGS/kg-bench.json"
	if [[ -z $(json_get "$out" connected) ]]; then
		ERRORS=$((ERRORS + 1))
		record "$v" storm_errors "$rep" 1
		say "$v storm #$rep: no result, exit $rc (see $LOGS/kg-bench.log)"
		return 0
	fi
	record "$v" storm_connected "$rep" "$(json_get "$out" connected)"
	record "$v" storm_complete "$rep" "$([[ $(json_get "$out" complete) == true ]] && echo 1 || echo 0)"
	record "$v" storm_s "$rep" "$(json_get "$out" storm_s)"
	record "$v" storm_p50_s "$rep" "$(calc "$(json_get "$out" p50_us) / 1000000" 2)"
	record "$v" storm_p99_s "$rep" "$(calc "$(json_get "$out" p99_us) / 1000000" 2)"
	record "$v" storm_retries "$rep" "$(json_get "$out" retries)"
	record "$v" storm_cpu_us "$rep" "$(json_get "$out" server_cpu_us)"
	record "$v" storm_resumed "$rep" "$(json_get "$out" resumed)"
	record "$v" storm_tpm_signs "$rep" "$((s1 - s0))"
	# a connection lost after its CONNACK is an error; devices the limit cut are the result
	record "$v" storm_errors "$rep" "$(json_get "$out" f_dropped)"
	ERRORS=$((ERRORS + $(json_get "$out" f_dropped)))
	for k in connect connect_timeout handshake handshake_timeout before_connack connack_timeout connack_refused dropped local; do
		record "$v" "storm_f_$k" "$rep" "$(json_get "$out" "f_$k")"
		(($(json_get "$out" "f_$k") == 0)) || kinds+="$k $(json_get "$out" "f_$k"), "
	done
	if [[ $v == *-resumed && $(json_get "$out" resumed) == 0 ]]; then
		NOT_RUN[$v]="nothing resumed in the storm (resumption not merged?)"
	fi
	say "$v storm #$rep: $(json_get "$out" connected) of $STORM_N connected in $(json_get "$out" storm_s) s (complete: $(json_get "$out" complete)), p50/p99 $(calc "$(json_get "$out" p50_us) / 1000000" 2)/$(calc "$(json_get "$out" p99_us) / 1000000" 2) s, retries $(json_get "$out" retries), failed attempts: ${kinds:-none}; resumed $(json_get "$out" resumed); TPM2_Sign $((s1 - s0))"
}

# hs_round VARIANT REP: a fresh server, a warm-up (the path end to end, lazy
# initialisation), one measured handshake run. A failed warm-up is an error and the
# variant is left out of the later rounds.
hs_round() {
	local v=$1 rep=$2 out
	if [[ $v == nginx* ]]; then start_nginx; else start_variant "$v"; fi
	if ! out=$(kgb handshake --count 20 --concurrency 5); then
		say "$v: warm-up failed: $out (see $LOGS/kg-bench.log, $LOGS/$v.log)"
		ERRORS=$((ERRORS + 1))
		record "$v" hs_errors "$rep" 1
		FAILED_WARMUP+="$v "
	else
		hs_run "$v" "$rep"
	fi
	stop_server
}

# in_order REP: the runnable variants, reversed on even repeats, so that the load of
# the shared CPUs drifting over a run does not favour the variants that come first.
in_order() {
	local v list=()
	for v in $VARIANTS; do
		[[ -n ${NOT_RUN[$v]:-} || " $FAILED_WARMUP " == *" $v "* ]] || list+=("$v")
	done
	if (($1 % 2 == 0)); then
		for ((v = ${#list[@]} - 1; v >= 0; v--)); do echo "${list[v]}"; done
	else
		printf '%s\n' "${list[@]+"${list[@]}"}"
	fi
}

# The variants interleaved: every handshake round runs each variant once, then every
# storm round (ratios compare runs minutes apart at most, not a whole run apart).
run_all() {
	local v rep storms
	for v in $VARIANTS; do
		case $v in
		file | tpm-direct | tpm-leaf | file-resumed | cache-resumed | file-cache | file-nofast | leaf-resumed | leaf-cache-resumed | file-pskke | cache-pskke | gnutls-*) variant_check "$v" || true ;;
		nginx | nginx-resumed) ;;
		*) die "unknown variant '$v' in BENCH_VARIANTS" ;;
		esac
	done
	for ((rep = 1; rep <= REPEAT; rep++)); do
		say "== handshakes, round $rep of $REPEAT =="
		for v in $(in_order "$rep"); do hs_round "$v" "$rep"; done
	done
	storms=$REPEAT
	((STORM_REPEAT_DIRECT > storms)) && storms=$STORM_REPEAT_DIRECT
	for ((rep = 1; rep <= storms; rep++)); do
		say "== storms, round $rep of $storms =="
		for v in $(in_order "$rep"); do
			[[ $v == nginx* || $v == gnutls-* ]] && continue
			if [[ $v == tpm-direct ]]; then
				((rep <= STORM_REPEAT_DIRECT)) || continue
			else
				((rep <= REPEAT)) || continue
			fi
			storm_run "$v" "$rep"
		done
	done
}

# Every device connects once, unmeasured, so no measured run pays for a first contact
# (registry rows, last-seen writes).
warm_registry() {
	local out
	variant_check file || die "ktlsgated rejects the file-key config: ${NOT_RUN[file]}"
	start_variant file
	say "warming: $N_DEVICES devices, one handshake each"
	out=$(kgb handshake --count "$N_DEVICES" --concurrency 20) || die "warm-up pass failed: $out (see $LOGS/kg-bench.log)"
	stop_server
}

# ---- report --------------------------------------------------------------------------
# ratio A METRIC_A B METRIC_B: A/B of the medians, n/a if either is missing or NOT RUN
ratio() {
	local a b
	[[ -n ${NOT_RUN[$1]:-} || -n ${NOT_RUN[$3]:-} ]] && { printf 'n/a'; return; }
	a=$(median "$1" "$2")
	b=$(median "$3" "$4")
	if [[ -n $a && -n $b ]] && awk "BEGIN { exit !($b > 0) }"; then calc "$a / $b" 2; else printf 'n/a'; fi
}
# verdict VALUE OP TARGET
verdict() {
	[[ $1 == n/a ]] && { printf 'n/a'; return; }
	if awk "BEGIN { exit !($1 $2 $3) }"; then printf 'met'; else printf '**missed**'; fi
}
# storms_complete VARIANT: true if it ran storms and every one connected every device
storms_complete() {
	local runs
	runs=$(awk -F'\t' -v t="$1" '$1 == t && $2 == "storm_complete"' "$RAW" | wc -l)
	((runs > 0 && $(total "$1" storm_complete) == runs))
}
# storm_cell VARIANT: the median time when every storm connected every device, else the
# median count connected by the limit and how many storms completed
storm_cell() {
	local runs
	runs=$(awk -F'\t' -v t="$1" '$1 == t && $2 == "storm_complete"' "$RAW" | wc -l)
	if ((runs == 0)); then
		printf 'n/a'
	elif storms_complete "$1"; then
		printf '%s' "$(median "$1" storm_s)"
	else
		printf '%s of %s by the %s s limit (%s of %s storms complete)' "$(median "$1" storm_connected)" \
			"$STORM_N" "$STORM_LIMIT" "$(total "$1" storm_complete)" "$runs"
	fi
}

# resumed_rows RESUMED FULL WHAT [1]: the two resumed targets' rows (rate >= 3x, CPU
# < 1/3), RESUMED against FULL; 1: the targets in parentheses (an opt-in measured).
resumed_rows() {
	local r rate=">= 3" cpu="< 0.33"
	if [[ ${4:-} == 1 ]]; then rate="(>= 3)" cpu="(< 0.33)"; fi
	r=$(ratio "$1" hs_rate "$2" hs_rate)
	echo "| handshakes/s, $3 | $r | $rate | $(verdict "$r" '>=' 3) |"
	r=$(ratio "$1" hs_cpu_us "$2" hs_cpu_us)
	echo "| server CPU per handshake, $3 | $r | $cpu | $(verdict "$r" '<' 0.3334) |"
}

report() {
	local v r label
	{
		echo "# bench-tpm: the TPM key in a reconnect storm (issue 13)"
		echo
		echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); ktlsgate $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'); $(nginx -v 2>&1 | sed 's|.*nginx/|nginx |'); $(openssl version | awk '{ print $1 " " $2 }'); swtpm $(swtpm --version 2>/dev/null | sed -n 's/.*version \([0-9.]*\).*/\1/p'); host $(uname -r), $(nproc) CPUs; load average (1/5/15) at the start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "- command: \`$CMDLINE\`"
		echo "- handshakes: $HS_COUNT per run, $HS_CONC in flight (tpm-direct: $HS_COUNT_TPM, $HS_CONC_TPM in flight), TLS 1.3 mTLS + $( [[ ${HS_TLS_ONLY:-0} == 1 ]] && echo 'close_notify right after the handshake (HS_TLS_ONLY=1: no MQTT, no backend)' || echo 'MQTT CONNECT/CONNACK + close'), kg-bench $THREADS thread(s); resumed variants: an unmeasured pass gives each device a ticket first; server CPU over the measured phase only; a fresh server per run; medians of $REPEAT run(s), the variants interleaved (order reversed every other round)"
		echo "- storm: $STORM_N devices connect at once, each attempt $STORM_TIMEOUT_MS ms at most, a failed one retried after 0.5-1 s (jittered), cut at $STORM_LIMIT s; a fresh daemon per storm; medians of $REPEAT (tpm-direct: $STORM_REPEAT_DIRECT) run(s). ktlsgated's handshake and CONNECT timeouts: $GATED_TIMEOUT_MS ms (default 10000)."
		echo "- TPM: swtpm behind tests/tpm/tpmproxy.py, +$SIGN_DELAY_MS ms per TPM2_Sign; ECDSA P-256 key at a persistent handle; ktlsgated workers: $WORKERS, TPM variants: $TPM_WORKERS"
		echo "- server chains (all under one root, which the devices trust): file key, TPM direct and nginx: server certificate + server-ca; certified-leaf: the daemon's leaf + the TPM key's CA certificate"
		echo
		for v in $VARIANTS; do
			[[ -n ${NOT_RUN[$v]:-} ]] && echo "**NOT RUN: $v: ${NOT_RUN[$v]}**" && echo
		done
		echo "| variant | handshakes/s | server CPU/handshake (us) | hs p50 / p99 (ms) | resumed / measured | TPM2_Sign per hs | storm: time to all connected (s) | storm p50 / p99 per device (s) | storm retries | storm server CPU per device (us) | storm TPM2_Sign | errors |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for v in $VARIANTS; do
			label=$v
			if [[ -n ${NOT_RUN[$v]:-} ]]; then
				echo "| $label | NOT RUN | | | | | | | | | | |"
				continue
			fi
			printf '| %s | %s | %s | %s / %s | %s / %s | %s | %s | %s / %s | %s | %s | %s | %s |\n' "$label" \
				"$(fmt "$(median "$v" hs_rate)")" "$(fmt "$(median "$v" hs_cpu_us)")" \
				"$(fmt "$(median "$v" hs_p50_ms)")" "$(fmt "$(median "$v" hs_p99_ms)")" \
				"$(total "$v" hs_resumed)" "$(total "$v" hs_n)" "$(fmt "$(median "$v" hs_tpm_signs)")" \
				"$(storm_cell "$v")" "$(fmt "$(median "$v" storm_p50_s)")" "$(fmt "$(median "$v" storm_p99_s)")" \
				"$(fmt "$(median "$v" storm_retries)")" "$(fmt "$(median "$v" storm_cpu_us)")" \
				"$(fmt "$(median "$v" storm_tpm_signs)")" \
				"$(($(total "$v" hs_errors) + $(total "$v" storm_errors)))"
		done
		echo
		echo "Failed storm attempts by kind (medians; each was retried):"
		echo
		echo "| variant | connect | connect timeout | handshake | handshake timeout | closed before CONNACK | CONNACK timeout | CONNACK refused | dropped after CONNACK | local |"
		echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for v in $VARIANTS; do
			[[ $v == nginx* || -n ${NOT_RUN[$v]:-} ]] && continue
			[[ -z $(median "$v" storm_connected) ]] && continue
			printf '| %s' "$v"
			for k in connect connect_timeout handshake handshake_timeout before_connack connack_timeout connack_refused dropped local; do
				printf ' | %s' "$(fmt "$(median "$v" "storm_f_$k")")"
			done
			echo " |"
		done
		echo
		echo "| ratio (issue 13 target) | value | target | |"
		echo "|---|---:|---:|---|"
		r=$(ratio tpm-leaf hs_rate file hs_rate); echo "| handshakes/s, certified-leaf / file | $r | >= 0.9 | $(verdict "$r" '>=' 0.9) |"
		r=$(ratio tpm-leaf storm_s file storm_s)
		storms_complete tpm-leaf && storms_complete file || r=n/a
		echo "| storm time, certified-leaf / file | $r | <= 1 | $(verdict "$r" '<=' 1.0) |"
		resumed_rows file-resumed file "resumed / full (file key)"
		resumed_rows cache-resumed file "resumed / full (file key, session cache)"
		resumed_rows leaf-resumed tpm-leaf "resumed / full (certified-leaf)"
		r=$(ratio file hs_cpu_us nginx hs_cpu_us); echo "| full-handshake server CPU, ktlsgated (file key) / nginx | $r | <= 0.6 | $(verdict "$r" '<=' 0.6) |"
		r=$(ratio file-cache hs_cpu_us nginx hs_cpu_us); echo "| full-handshake server CPU, ktlsgated (file key, session cache) / nginx | $r | <= 0.6 | $(verdict "$r" '<=' 0.6) |"
		r=$(ratio file-nofast hs_cpu_us nginx hs_cpu_us); echo "| the same with fast_ec_decode = no (OpenSSL's decoders) / nginx | $r | (<= 0.6) | $(verdict "$r" '<=' 0.6) |"
		resumed_rows leaf-cache-resumed tpm-leaf "resumed / full (certified-leaf, session cache)"
		resumed_rows file-pskke file "resumed without ECDHE / full (file key; resumption_psk_ke = prefer)" 1
		resumed_rows cache-pskke file "resumed without ECDHE / full (file key, session cache)" 1
		resumed_rows gnutls-pskke gnutls-full "resumed without ECDHE / full (GnuTLS's client offering psk_ke alone; resumption_psk_ke = allow)" 1
		resumed_rows gnutls-resumed gnutls-full "resumed with ECDHE / full (GnuTLS's client, default offer)" 1
		r=$(ratio tpm-direct hs_rate file hs_rate); echo "| handshakes/s, TPM direct / file (no target: what the leaf mode is for) | $r | | |"
		r=$(ratio nginx-resumed hs_rate nginx hs_rate); echo "| handshakes/s, resumed / full, nginx (the peer's own; no target) | $r | | |"
		r=$(ratio nginx-resumed hs_cpu_us nginx hs_cpu_us); echo "| server CPU per handshake, resumed / full, nginx (the peer's own; no target) | $r | | |"
		r=$(ratio cache-resumed hs_cpu_us nginx-resumed hs_cpu_us); echo "| resumed-handshake server CPU, ktlsgated (session cache) / nginx (tickets) | $r | | |"
		r=$(ratio file-resumed hs_cpu_us nginx-resumed hs_cpu_us); echo "| resumed-handshake server CPU, ktlsgated (tickets) / nginx (tickets) | $r | | |"
		echo
		echo "Configs ([tpm], [tls] lines): $(for v in $VARIANTS; do [[ -n ${CONF_NOTE[$v]:-} ]] && printf '%s: %s ' "$v" "${CONF_NOTE[$v]}"; done)"
		echo
		echo "Server CPU: utime + stime of every process of the server (all threads, /proc/PID/stat),"
		echo "read by kg-bench just before and after the measured phase, divided by the handshakes (or,"
		echo "in a storm, by the devices connected); the broker and the client are not counted."
		echo "A storm that did not connect every device shows the count connected by the limit."
	} >"$RESULTS"
	cat "$RESULTS"
}

# ---- main -------------------------------------------------------------------------------
main() {
	local v nr=0
	for b in "$KG_BENCH" "$KTLSGATE" "$KTLSGATED"; do
		[[ -x $b ]] || die "$b missing (make all build/kg-bench)"
	done
	for t in mosquitto openssl ss swtpm nginx python3; do
		command -v "$t" >/dev/null || die "$t is not installed"
	done
	if [[ " $VARIANTS " == *" gnutls-"* ]]; then
		[[ -x $KG_GTLS_BENCH ]] || die "$KG_GTLS_BENCH missing (make $KG_GTLS_BENCH; libgnutls28-dev)"
	fi
	if variant_on nginx || variant_on nginx-resumed; then
		[[ -f /usr/lib/nginx/modules/ngx_stream_module.so ]] || die "nginx stream module missing: apt-get install libnginx-mod-stream"
	fi
	LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
	# a storm: STORM_N sockets in kg-bench, 2 x STORM_N in ktlsgated, STORM_N in mosquitto
	ulimit -n "$(ulimit -Hn)"
	(($(ulimit -n) >= 2 * STORM_N + 1000)) || die "the fd limit ($(ulimit -n)) is too low for a storm of $STORM_N"
	mkdir -p "$OUT" "$LOGS"
	rm -rf "$RUN"
	mkdir -p "$RUN"
	rm -f "$LOGS"/*.log "$LOGS"/*.json
	: >"$RAW"
	: >"$TPMLOG"
	make_pki
	cat "$PKI/root/cert.pem" "$PKI/factory/cert.pem" >"$RUN/clients-ca.pem"
	make_registry
	start_broker
	if variant_on tpm-direct || variant_on tpm-leaf || variant_on leaf-resumed || variant_on leaf-cache-resumed; then
		start_swtpm
		tpm_provision
		start_tpmproxy
	fi
	warm_registry
	run_all
	report
	for v in $VARIANTS; do [[ -n ${NOT_RUN[$v]:-} ]] && nr=$((nr + 1)); done
	say "results in $RESULTS (raw: $RAW, logs: $LOGS)"
	say "bench-tpm: $(($(wc -w <<<"$VARIANTS") - nr)) variant(s) run, $nr NOT RUN, $ERRORS error(s)"
	((ERRORS == 0)) || exit 1
	((nr == 0)) || exit 3
}

main "$@"
