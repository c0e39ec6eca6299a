#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
#
# revoke-ca.sh - `make bench-revoke`: how long a compromised CA takes to lose its live
# sessions. One mosquitto backend, one ktlsgated, and build/kg-bench holding N mTLS +
# MQTT sessions (idle mode) of N devices under the registered intermediate "factory";
# then `ktlsgate ca set factory --status disabled` and the time from starting that CLI to
# the daemon's last live session gone (its control socket's `status`, polled every
# 2 ms). REVOKE_RUNS runs (default 3), each with the CA enabled again and the sessions
# reopened; prints every figure and the median. Everything on 127.0.0.1; every process
# started here is stopped on exit.
# Knobs: REVOKE_CONNS (5000), REVOKE_RUNS (3), REVOKE_OUT (build/bench-revoke); KG_BENCH,
# KTLSGATE, KTLSGATED (build/...).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# bench_paths (only that: wait_listen below replaces lib.sh's)
# shellcheck source=tests/bench/lib.sh
. "$HERE/lib.sh"
# ROOT, BUILD, OUT, KG_BENCH, KTLSGATE, KTLSGATED; OUT from REVOKE_OUT, never BENCH_OUT
# (the other benches' directory)
BENCH_OUT='' bench_paths bench-revoke "${REVOKE_OUT:-}"
N=${REVOKE_CONNS:-5000}
RUNS=${REVOKE_RUNS:-3}
PKI=$OUT/pki
RUN=$OUT/run
PIDS=()

say() { printf '[bench-revoke %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

cleanup() {
	local rc=$? p
	for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]+"${PIDS[@]}"}"; do
		timeout 5 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for b in "$KG_BENCH" "$KTLSGATE" "$KTLSGATED"; do
	[[ -x $b ]] || die "$b missing (make all build/kg-bench)"
done
# 2 fds per session in the gate, 1 in the broker and the client: raise the soft limit.
ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > N * 2 + 100)) || die "fd limit $(ulimit -n) too low for $N sessions"

port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_listen() {
	local i
	for ((i = 0; i < 200; i++)); do
		[[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]] && return 0
		sleep 0.05
	done
	return 1
}

kg() { "$KTLSGATE" -c "$RUN/ktlsgate.conf" "$@"; }

# ---- PKI: root -> factory -> dev-00000..; reused while it is big enough ------------
make_pki() {
	local have=0 i
	[[ -f $PKI/.count ]] && have=$(cat "$PKI/.count")
	if ((have >= N)) && openssl x509 -checkend 86400 -noout -in "$PKI/devices/dev-00000/cert.pem" >/dev/null 2>&1; then
		say "PKI: reusing $PKI ($have devices)"
		return 0
	fi
	rm -rf "$PKI"
	mkdir -p "$PKI/devices"
	say "PKI: root, factory, server, $N devices"
	"$KTLSGATE" pki root --cn "revoke-root" --out "$PKI/root" >/dev/null
	"$KTLSGATE" pki intermediate --cn "factory" --ca "$PKI/root" --out "$PKI/factory" >/dev/null
	"$KTLSGATE" pki server --cn localhost --ca "$PKI/root" --out "$PKI/server" >/dev/null
	# All in one process (mkdevices.py: the profile of `ktlsgate pki device`).
	for ((i = 0; i < N; i++)); do printf 'devices dev-%05d\n' "$i"; done |
		python3 "$HERE/mkdevices.py" "$PKI" || die "device certificates failed"
	echo "$N" >"$PKI/.count"
}

# register NAME DIR: ca add + proof of possession
register() {
	local out code
	out=$(kg ca add "$2/cert.pem" --name "$1") || die "ca add $1: $out"
	code=$(sed -n 's/^challenge: *//p' <<<"$out" | head -1)
	"$KTLSGATE" pki verification-cert --ca "$2" --challenge "$code" --out "$RUN/verify-$1.pem" >/dev/null
	kg ca verify "$1" "$RUN/verify-$1.pem" >/dev/null || die "ca verify $1"
}

live() {   # the daemon's live connection count, from its control socket
	python3 - "$RUN/ctl.sock" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"status\n")
buf = b""
while not buf.endswith(b"OK\n"):
    d = s.recv(65536)
    if not d: break
    buf += d
print(json.loads(buf.split(b"\n")[0])["connections"])
EOF
}

make_pki
rm -rf "$RUN"
mkdir -p "$RUN"
BK=$(port)
GW=$(port)
MP=$(port)
cat >"$RUN/mosquitto.conf" <<EOF
per_listener_settings false
listener $BK 127.0.0.1
allow_anonymous true
persistence false
max_connections -1
log_dest stderr
log_type error
user root
EOF
mosquitto -c "$RUN/mosquitto.conf" >"$RUN/mosquitto.log" 2>&1 &
PIDS+=($!)
wait_listen "$BK" || die "mosquitto did not start"
cat >"$RUN/ktlsgate.conf" <<EOF
[daemon]
listen = 127.0.0.1:$GW
workers = 2
cert = $PKI/server/chain.pem
key = $PKI/server/key.pem
registry = $RUN/registry.db
control_socket = $RUN/ctl.sock
metrics_listen = 127.0.0.1:$MP
default_backend = local
log_level = warn
[limits]
max_connections = $((N + 1000))
handshake_timeout_ms = 10000
connect_timeout_ms = 10000
; every session comes from 127.0.0.1: the per-source limits would refuse most of them
source_max_handshakes = 0
source_rate = 0
[backend local]
address = 127.0.0.1:$BK
EOF
register root "$PKI/root"
register factory "$PKI/factory"
kg ca set factory --auto-enroll on >/dev/null
"$KTLSGATED" -c "$RUN/ktlsgate.conf" >"$RUN/gw.log" 2>&1 &
PIDS+=($!)
wait_listen "$GW" || die "ktlsgated did not start: $(tail -5 "$RUN/gw.log")"

results=()
for ((run = 1; run <= RUNS; run++)); do
	kg ca set factory --status enabled >/dev/null
	"$KG_BENCH" idle --target "127.0.0.1:$GW" --ca "$PKI/root/cert.pem" --devices "$PKI/devices" \
		--conns "$N" --hold 120 --ping 60 --concurrency 100 --timeout 20000 >"$RUN/idle-$run.out" 2>"$RUN/idle-$run.err" &
	bpid=$!
	PIDS+=("$bpid")
	for ((i = 0; i < 1200; i++)); do
		grep -q '^ready' "$RUN/idle-$run.out" && break
		sleep 0.1
	done
	ready=$(sed -n 's/^ready //p' "$RUN/idle-$run.out")
	[[ $ready == "$N" ]] || die "run $run: only '${ready:-0}' of $N sessions came up ($(head -3 "$RUN/idle-$run.err"))"
	sleep 1
	before=$(live)
	((before >= N)) || die "run $run: the daemon holds $before sessions, not $N"
	# Time from the CLI's start to the daemon's last session gone.
	res=$(python3 - "$KTLSGATE" "$RUN/ktlsgate.conf" "$RUN/ctl.sock" <<'EOF'
import json, socket, subprocess, sys, time
kg, conf, sock = sys.argv[1:4]
def live():
    s = socket.socket(socket.AF_UNIX); s.connect(sock); s.sendall(b"status\n")
    buf = b""
    while not buf.endswith(b"OK\n"):
        d = s.recv(65536)
        if not d: break
        buf += d
    s.close()
    return json.loads(buf.split(b"\n")[0])["connections"]
t0 = time.monotonic()
p = subprocess.Popen([kg, "-c", conf, "ca", "set", "factory", "--status", "disabled"],
                     stdout=subprocess.DEVNULL)
left = None
while time.monotonic() - t0 < 30:
    left = live()
    if left == 0:
        break
    time.sleep(0.002)
t1 = time.monotonic()
rc = p.wait()
t2 = time.monotonic()
print(json.dumps({"closed_ms": round((t1 - t0) * 1000, 1), "cli_ms": round((t2 - t0) * 1000, 1),
                  "cli_rc": rc, "left": left}))
EOF
)
	say "run $run: $before sessions; $res"
	left=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["left"])' "$res")
	[[ $left == 0 ]] || die "run $run: $left sessions still open after 30 s"
	results+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["closed_ms"])' "$res")")
	kill "$bpid" 2>/dev/null || true
	wait "$bpid" 2>/dev/null || true
done
median=$(printf '%s\n' "${results[@]}" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "ca set --status disabled with $N live sessions: closed in ${results[*]} ms; median $median ms (commit $(git -C "$ROOT" rev-parse --short HEAD), $(date -u +%F))"
