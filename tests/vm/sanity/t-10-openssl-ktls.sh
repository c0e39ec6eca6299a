#!/bin/sh
# kgvm-timeout: 180
# OpenSSL 3.0's own kTLS between s_server and s_client, both in the guest: files go up
# (client -> server) and down (SSL_sendfile) byte-exactly, and /proc/net/tls_stat shows kTLS sockets
# being set up. TLS 1.2 with AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 must be
# offloaded both ways (OpenSSL does TX and RX); TLS 1.3 is reported (OpenSSL 3.0
# offloads TX only). OpenSSL 3.0's CLI has no -ktls switch: kTLS is switched on through
# the config file (Options = KTLS) that mkpki.sh writes.
. "$KGVM_LIB"

P=$KGVM_DATA/pki
export OPENSSL_CONF=$P/openssl-ktls.cnf
[ -f "$OPENSSL_CONF" ] || fail "no $OPENSSL_CONF (host-prep.sh did not run?)"
PORT=4433
rand_file up.bin 262144
mkdir -p www
rand_file www/down.bin 200003
ln -s www/down.bin down.bin

# xfer DIR VERSION CIPHER-OPTION...: one connection, DIR = up or down. Up: s_client
# sends its stdin, s_server writes what it reads to stdout. Down: s_server -WWW
# -sendfile answers a GET with the file through SSL_sendfile (kTLS TX only). s_server
# fed from a file on stdin is not used: it sometimes stalls after one record, kTLS or
# not.
xfer() {
	dir=$1 ver=$2
	shift 2
	rm -f recv.bin in.fifo
	if [ "$dir" = up ]; then
		# An open, silent stdin: at EOF s_server would end the session before reading.
		mkfifo in.fifo
		openssl s_server -accept 127.0.0.1:$PORT -cert $P/server.pem -key $P/server.key \
			"$ver" "$@" -quiet -naccept 1 <in.fifo >recv.bin 2>server.err &
		spid=$!
		exec 3>in.fifo
	else
		(cd www && exec openssl s_server -accept 127.0.0.1:$PORT -cert $P/server.pem \
			-key $P/server.key "$ver" "$@" -quiet -WWW -sendfile -naccept 1 \
			</dev/null >/dev/null 2>../server.err) &
		spid=$!
	fi
	wait_port $PORT 20 || { cat server.err; fail "s_server did not listen"; }
	if [ "$dir" = up ]; then
		# -nocommands: a line of the random payload starting with R or Q is data.
		timeout 60 openssl s_client -connect 127.0.0.1:$PORT -CAfile $P/ca.pem \
			-verify_return_error "$ver" -quiet -no_ign_eof -nocommands <up.bin >/dev/null 2>client.err
		crc=$?
		# s_server may stay until its stdin closes: close it once everything is written.
		i=0
		while [ $i -lt 100 ] && kill -0 $spid 2>/dev/null &&
			[ "$(stat -c %s recv.bin)" -lt "$(stat -c %s up.bin)" ]; do
			sleep 0.1
			i=$((i + 1))
		done
		exec 3>&-
	else
		printf 'GET /down.bin HTTP/1.0\r\n\r\n' >get.txt
		timeout 60 openssl s_client -connect 127.0.0.1:$PORT -CAfile $P/ca.pem \
			-verify_return_error "$ver" -quiet -ign_eof <get.txt >resp.bin 2>client.err
		crc=$?
		# The reply: a 45-byte HTTP/1.0 header, then the file.
		tail -c +46 resp.bin >recv.bin
		grep -q 'sendfile requested but KTLS is not available' server.err &&
			fail "$ver $*: s_server -sendfile found no kTLS TX"
	fi
	wait $spid
	src=$?
	[ $crc = 0 ] && [ $src = 0 ] || { cat server.err client.err; fail "$dir $ver $*: s_client $crc, s_server $src"; }
	cmp -s "$dir.bin" recv.bin || { cat server.err client.err; fail "$dir $ver $*: $(stat -c %s recv.bin) bytes received, not byte-exact"; }
}

# run VERSION LABEL CIPHER-OPTION...: up and down; sets dtx/drx, the kTLS sockets set up.
run() {
	ver=$1 label=$2
	shift 2
	tx0=$(tls_stat TlsTxSw) rx0=$(tls_stat TlsRxSw)
	xfer up "$ver" "$@"
	xfer down "$ver" "$@"
	dtx=$(($(tls_stat TlsTxSw) - tx0)) drx=$(($(tls_stat TlsRxSw) - rx0))
	note "$label: byte-exact both ways; kTLS sockets set up: TX $dtx, RX $drx (of 4 socket ends)"
}

for c in ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-ECDSA-AES256-GCM-SHA384 ECDHE-ECDSA-CHACHA20-POLY1305; do
	run -tls1_2 "TLS 1.2 $c" -cipher "$c"
	# Each connection: the sender's TX and the receiver's RX at least.
	[ "$dtx" -ge 2 ] || fail "TLS 1.2 $c: TX not offloaded (TlsTxSw +$dtx)"
	[ "$drx" -ge 2 ] || fail "TLS 1.2 $c: RX not offloaded (TlsRxSw +$drx)"
done
run -tls1_3 "TLS 1.3 TLS_AES_128_GCM_SHA256" -ciphersuites TLS_AES_128_GCM_SHA256
[ "$dtx" -ge 2 ] || fail "TLS 1.3: TX not offloaded (TlsTxSw +$dtx)"
[ "$drx" = 0 ] || note "TLS 1.3: this OpenSSL offloads RX too (TlsRxSw +$drx)"
note "tls_stat: $(awk '$2 != 0 { printf "%s=%s ", $1, $2 }' /proc/net/tls_stat)"
[ "$(tls_stat TlsDecryptError)" = 0 ] || fail "TlsDecryptError = $(tls_stat TlsDecryptError)"
# The counters go to the host too (run.sh --out), which also proves kgvm_export.
cp /proc/net/tls_stat tls_stat.txt
kgvm_export tls_stat.txt "tls_stat-$(uname -r).txt"
ok
