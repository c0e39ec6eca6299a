#!/bin/sh
# Issue 14, counted exactly (`make bench-vm-instr`): the daemon's user-space
# instructions per GB relayed, in each data path, under valgrind's callgrind in the
# guest (callgrind counts every guest user-space instruction the daemon executes, all
# threads; the kernel's work, kTLS included, is not seen). For each data path and
# repeat, ktlsgated runs twice under callgrind, each time fresh, with the same
# BENCH_CONNS connections publishing QoS 1 messages of BENCH_SIZE bytes: BENCH_VOLUMES
# (two message counts) apart, so start-up, handshakes and shutdown cancel in the
# difference and what is left is per byte. results.tsv (one line per run: data path,
# repeat, messages, payload bytes, Ir, sessions per mode) and the callgrind files
# (cg.tar) are exported; report.sh makes the table on the host.
# kgvm-timeout: 3000
. "$KGVM_LIB"
CONNS=${BENCH_CONNS:-10}
SIZE=${BENCH_SIZE:-65536}
VOLUMES=${BENCH_VOLUMES:-"40 240"}
REPEAT=${BENCH_REPEAT:-1}
TERMS=${BENCH_TERMS:-"ktls_splice userspace"}
D=$KGVM_DATA
OUT=/tmp/results.tsv
CG=/tmp/cg
mkdir -p $CG
printf 'term\trep\tmsgs\tbytes\tir\tsessions\n' >$OUT
[ -x /usr/libexec/valgrind/callgrind-amd64-linux ] || fail "valgrind is not in the guest"

start_broker   # guest-lib.sh

# run TERM REP MSGS: one fresh ktlsgated under callgrind, CONNS sessions, MSGS messages.
run() {
	relay=$1
	[ "$1" = ktls_splice ] && relay=auto
	rm -rf /tmp/gw && mkdir -p /tmp/gw && cp -a $D/gw/. /tmp/gw/
	sed -i "s/^relay = .*/relay = $relay/" /tmp/gw/ktlsgate.conf
	name=$1-$2-$3
	# --dump-line/--dump-instr=no: per function only (the files stay small)
	valgrind --tool=callgrind --dump-line=no --dump-instr=no --callgrind-out-file=$CG/$name.out \
		--log-file=$CG/$name.log ktlsgated -c /tmp/gw/ktlsgate.conf >/tmp/gw/gw.log 2>&1 &
	pid=$!
	wait_port 8883 600 || fail "$name: ktlsgated did not start under valgrind: $(tail -5 $CG/$name.log) $(tail -5 /tmp/gw/gw.log)"
	kg-bench publish --target 127.0.0.1:8883 --ca $D/pki/root/cert.pem --devices $D/pki/devices \
		--timeout 600000 --conns $CONNS --msgs $3 --size $SIZE --window 4 >/tmp/pub.out 2>>/tmp/kg-bench.log ||
		fail "$name: kg-bench: $(cat /tmp/pub.out) $(tail -3 /tmp/kg-bench.log) $(tail -5 /tmp/gw/gw.log)"
	# the data path each session took
	modes=$(wget -q -O - http://127.0.0.1:9100/metrics |
		sed -n 's/^ktlsgate_sessions_started_total{mode="\([a-z_]*\)"} \([0-9]*\)$/\1=\2/p' | grep -v '=0$' | tr '\n' ' ')
	n=$(echo "$modes" | tr ' ' '\n' | sed -n "s/^$1=//p")
	[ "${n:-0}" -ge "$CONNS" ] || fail "$name: only ${n:-0} sessions in mode $1 ($modes)"
	kill $pid
	i=0
	while kill -0 $pid 2>/dev/null; do
		sleep 1; i=$((i + 1))
		[ $i -lt 300 ] || fail "$name: ktlsgated did not exit under valgrind"
	done
	wait $pid
	ir=$(sed -n 's/.*Collected : *\([0-9][0-9]*\).*/\1/p' $CG/$name.log)
	[ -n "$ir" ] || fail "$name: no count from callgrind: $(tail -5 $CG/$name.log)"
	printf '%s\t%s\t%d\t%d\t%s\t%s\n' $1 $2 $3 $(($3 * SIZE)) $ir "$(echo $modes)" >>$OUT
	# valgrind's complaints (unhandled syscalls, ioctls, socket options) are reported
	grep -E 'WARNING|unhandled|noted but unhandled|Unsupported' $CG/$name.log | sed "s/^/$name: valgrind: /" | sort -u
	note "$name: $ir Ir, sessions: $modes, $(head -c 120 /tmp/pub.out)"
}

for rep in $(seq 1 $REPEAT); do
	for t in $TERMS; do
		for m in $VOLUMES; do
			run $t $rep $m
		done
	done
done
(cd /tmp && tar -cf /tmp/cg.tar cg)
gzip -9 /tmp/cg.tar
note "callgrind files: $(du -k /tmp/cg.tar.gz | cut -f1) KiB"
kgvm_export $OUT results.tsv
kgvm_export /tmp/cg.tar.gz cg.tar.gz
ok
