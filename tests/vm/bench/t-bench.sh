#!/bin/sh
# The offload bench (issue 3, `make bench-vm`): the same MQTT QoS 1 load through
# ktlsgated in each data path and through HAProxy, inside the guest. TCG timings mean
# little, so cost is measured, not speed: the proxy's own CPU seconds (user and system
# from /proc/PID/stat, all threads) per GB of payload relayed and per million
# messages, connection setup excluded, and RSS and fds per idle session. Results:
# results.tsv, exported to the host and summarised by report.sh.
# kgvm-timeout: 3000
. "$KGVM_LIB"
CONNS=${BENCH_CONNS:-50}
SMALL_MSGS=${BENCH_SMALL_MSGS:-20000}
BIG_MSGS=${BENCH_BIG_MSGS:-1000}
IDLE=${BENCH_IDLE:-500}
REPEAT=${BENCH_REPEAT:-1}
TERMS=${BENCH_TERMS:-"ktls_splice ktls_tx userspace haproxy"}
D=$KGVM_DATA
TCK=100
OUT=/tmp/results.tsv
printf 'term\trep\tload\tmsgs\tbytes\tutime_s\tstime_s\textra\n' >$OUT

start_broker   # guest-lib.sh

cpu() { awk '{ print $14, $15 }' /proc/$1/stat; }
# wcpu PID: the relay threads' own CPU: user and system ticks and on-CPU nanoseconds
# (schedstat: exact, where the tick split is sampled) summed over ktlsgated's workers
# (kg-worker*: the registry writer, the metrics and KDF threads left out) or every
# HAProxy thread; then the whole process's on-CPU nanoseconds.
wcpu() {
	for t in /proc/$1/task/*; do
		c=$(cat $t/comm 2>/dev/null) || continue
		case $c in kg-worker*|haproxy*) w=1 ;; *) w=0 ;; esac
		echo "$w $(awk '{ print $14, $15 }' $t/stat 2>/dev/null) $(cut -d' ' -f1 $t/schedstat 2>/dev/null)"
	done | awk '$1 == 1 { u += $2; s += $3; n += $4 } { p += $4 } END { printf "%d %d %.0f %.0f\n", u, s, n, p }'
}
rss_kb() { awk '/^VmRSS/ { print $2 }' /proc/$1/status; }

start_term() {
	case $1 in
	haproxy)
		haproxy -f $D/haproxy.cfg -db >/tmp/haproxy.log 2>&1 &
		PID=$! PORT=8884 ;;
	*)
		relay=$1
		[ "$1" = ktls_splice ] && relay=auto
		mkdir -p /tmp/gw && cp -a $D/gw/. /tmp/gw/
		sed -i "s/^relay = .*/relay = $relay/" /tmp/gw/ktlsgate.conf
		ktlsgated -c /tmp/gw/ktlsgate.conf >/tmp/gw/gw.log 2>&1 &
		PID=$! PORT=8883 ;;
	esac
	wait_port $PORT 30 || fail "$1 did not start"
}

kgb() {
	_m=$1
	shift
	kg-bench "$_m" --target 127.0.0.1:$PORT --ca $D/pki/root/cert.pem --devices $D/pki/devices \
		--timeout 60000 "$@" 2>>/tmp/kg-bench.log
}

# mode_check TERM: ktlsgated really ran the sessions in that data path.
mode_check() {
	case $1 in haproxy) return 0 ;; esac
	n=$(wget -q -O - http://127.0.0.1:9100/metrics | awk -v m="ktlsgate_sessions_started_total{mode=\"$1\"}" '$1 == m { print $2 }')
	[ "${n:-0}" -ge "$CONNS" ] || fail "$1: only ${n:-0} sessions in mode $1"
}

# publish TERM REP LOAD MSGS SIZE WINDOW: CPU of the relay alone. kg-bench --gate
# says "ready" once its connections are up and publishes 2 s later: the proxy's CPU is
# sampled in between and after the last PUBACK (handshakes, which dominate under TCG,
# are not what this bench is about).
publish() {
	: >/tmp/pub.out
	kgb publish --conns $CONNS --msgs $4 --size $5 --window $6 --gate 2 >/tmp/pub.out &
	bp=$!
	i=0
	while ! grep -q '^ready' /tmp/pub.out; do
		sleep 0.1; i=$((i + 1))
		[ $i -lt 3000 ] || fail "$1 $3: never ready: $(tail -3 /tmp/kg-bench.log)"
		kill -0 $bp 2>/dev/null || grep -q '^ready' /tmp/pub.out || fail "$1 $3: kg-bench ended early: $(cat /tmp/pub.out)"
	done
	c0=$(cpu $PID) w0=$(wcpu $PID)
	wait $bp || fail "$1 $3: kg-bench: $(cat /tmp/pub.out) $(tail -3 /tmp/kg-bench.log)"
	c1=$(cpu $PID) w1=$(wcpu $PID)
	out=$(grep '^{' /tmp/pub.out)
	# extra: the workers' user and system seconds (ticks), their on-CPU seconds and the
	# process's (schedstat ns), and the workers' user ticks seen (the split's resolution)
	echo "$c0 $c1 $w0 $w1" | awk -v t="$1" -v r="$2" -v l="$3" -v m="$4" -v s="$5" -v k=$TCK \
		'{ printf "%s\t%s\t%s\t%d\t%d\t%.3f\t%.3f\twu=%.3f ws=%.3f wcpu=%.6f pcpu=%.6f wticks=%d\n", t, r, l, m, m * s,
		   ($3 - $1) / k, ($4 - $2) / k, ($9 - $5) / k, ($10 - $6) / k, ($11 - $7) / 1e9, ($12 - $8) / 1e9, $9 - $5 }' >>$OUT
	note "$1 #$2 $3: $(tail -1 $OUT | cut -f6,7 | tr '\t' ' ') s user/sys; $(echo "$out" | head -c 160)"
}

for rep in $(seq 1 $REPEAT); do
	for t in $TERMS; do
		start_term $t
		# every device once (auto-enrolment writes its row), before anything is sampled
		kgb handshake --count ${BENCH_DEVICES:-600} --concurrency 10 >/tmp/warm.out ||
			fail "$t: warm-up failed: $(cat /tmp/warm.out) $(tail -3 /tmp/kg-bench.log) $(tail -5 /tmp/gw/gw.log 2>/dev/null)"
		publish $t $rep small $SMALL_MSGS 256 16
		publish $t $rep big $BIG_MSGS 65536 4
		mode_check $t
		kill $PID; wait $PID 2>/dev/null
		# idle: a fresh server, RSS and fds before and after IDLE sessions
		start_term $t
		kgb handshake --count 20 --concurrency 5 >/dev/null || fail "$t: idle warm-up failed"
		r0=$(rss_kb $PID) f0=$(ls /proc/$PID/fd | wc -l)
		kgb idle --conns $IDLE --hold 4 --concurrency 10 >/tmp/idle.out &
		ip=$!
		i=0
		while ! grep -q "^ready $IDLE" /tmp/idle.out 2>/dev/null; do
			sleep 1; i=$((i + 1))
			[ $i -lt 600 ] || fail "$t: idle sessions never all up: $(cat /tmp/idle.out)"
		done
		r1=$(rss_kb $PID) f1=$(ls /proc/$PID/fd | wc -l)
		wait $ip
		printf '%s\t%s\tidle\t%d\t0\t0\t0\trss_kib_per_session=%s fds_per_session=%s\n' $t $rep $IDLE \
			"$(awk -v a=$r0 -v b=$r1 -v n=$IDLE 'BEGIN { printf "%.2f", (b - a) / n }')" \
			"$(awk -v a=$f0 -v b=$f1 -v n=$IDLE 'BEGIN { printf "%.2f", (b - a) / n }')" >>$OUT
		note "$t #$rep idle: $(tail -1 $OUT | cut -f8)"
		kill $PID; wait $PID 2>/dev/null
	done
done
kgvm_export $OUT results.tsv
ok
