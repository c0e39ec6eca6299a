/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_config.c - the config parser: a full file lands in every field, defaults
 * fill what is absent, and a table of broken files each fails with a message that
 * names the line. Also kg_sockaddr_parse, kg_config_load on real files (missing
 * file, relative paths, a path that outgrows PATH_MAX) and the shipped example.
 * Runs with cwd tests/unit.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/ssl.h>

#include "ops/config.h"
#include "testlib.h"

#define BASE "[daemon]\ncert = c.pem\nkey = k.pem\nregistry = r.db\n"

/* snprintf that must fit: keeps gcc's truncation analysis out and the test honest. */
static void fmt(char *buf, size_t cap, const char *f, ...) KG_PRINTF(3, 4);

static void fmt(char *buf, size_t cap, const char *f, ...)
{
	va_list ap;
	int n;

	va_start(ap, f);
	n = vsnprintf(buf, cap, f, ap);
	va_end(ap);
	ck_assert_msg(n >= 0 && (size_t)n < cap, "test string too long");
}

static struct kg_config *cfg_new(void)
{
	struct kg_config *cfg = malloc(sizeof(*cfg));

	ck_assert_ptr_nonnull(cfg);
	return cfg;
}

START_TEST(test_full_round_trip)
{
	static const char text[] =
		"; a comment\n"
		"[daemon]\n"
		"listen = 192.0.2.1:8883, [2001:db8::1]:8884 127.0.0.1:1\n"
		"workers = 4\n"
		"cert = /etc/kg/chain.pem\n"
		"key = /etc/kg/key.pem ; inline comment\n"
		"registry = /var/lib/kg/registry.db\n"
		"control_socket = /run/kg/ctl.sock\n"
		"metrics_listen = [::1]:9999\n"
		"default_backend = b-2\n"
		"client_id_check = off\n"
		"registry_cache = 5000\n"
		"registry_down = fail-open\n"
		"registry_down_seen = 120\n"
		"username_check = rewrite\n"
		"relay = openssl\n"
		"log_level = debug\n"
		"[tls]\n"
		"ciphers = ECDHE-ECDSA-AES128-GCM-SHA256\n"
		"ciphersuites = TLS_AES_128_GCM_SHA256\n"
		"groups = X25519\n"
		"security_level = 3\n"
		"crl_grace = 3600\n"
		"[limits]\n"
		"max_connections = 500\n"
		"max_handshakes = 500\n"
		"handshake_timeout_ms = 10\n"
		"connect_timeout_ms = 600000\n"
		"backend_timeout_ms = 2500\n"
		"max_connect_bytes = 268435455\n"
		"refuse_linger_ms = 0\n"
		"[backend local]\n"
		"address = 127.0.0.1:1883\n"
		"[backend b-2]\n"
		"address = [::1]:1884\n"
		"proxy_protocol = v2\n"
		"[crl]\n"
		"factory = /etc/kg/crl/factory.pem\n"
		"Other_CA.v2 = crl/other.pem\n";
	struct kg_config *cfg = cfg_new();
	const struct kg_sockaddr *a;
	char err[KG_ERRBUF];

	ck_assert_msg(kg_config_parse_string(text, "full.conf", cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(cfg->path, "full.conf");
	ck_assert_uint_eq(cfg->n_listen, 3);
	ck_assert_str_eq(cfg->listen[0].text, "192.0.2.1:8883");
	ck_assert_str_eq(cfg->listen[1].text, "[2001:db8::1]:8884");
	ck_assert_str_eq(cfg->listen[2].text, "127.0.0.1:1");
	a = &cfg->listen[1];
	ck_assert_int_eq(a->ss.ss_family, AF_INET6);
	ck_assert_uint_eq(a->len, sizeof(struct sockaddr_in6));
	ck_assert_uint_eq(ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port), 8884);
	ck_assert_uint_eq(cfg->workers, 4);
	ck_assert_str_eq(cfg->cert_file, "/etc/kg/chain.pem");
	ck_assert_str_eq(cfg->key_file, "/etc/kg/key.pem");
	ck_assert_str_eq(cfg->registry, "/var/lib/kg/registry.db");
	ck_assert_str_eq(cfg->control_socket, "/run/kg/ctl.sock");
	ck_assert(cfg->metrics_enabled);
	ck_assert_str_eq(cfg->metrics_listen.text, "[::1]:9999");
	ck_assert_str_eq(cfg->default_backend, "b-2");
	ck_assert_int_eq(cfg->client_id_check, KG_CLIENT_ID_OFF);
	ck_assert_uint_eq(cfg->registry_cache, 5000);
	ck_assert_int_eq(cfg->registry_down, KG_REGDOWN_FAIL_OPEN);
	ck_assert_uint_eq(cfg->registry_down_seen, 120);
	ck_assert_int_eq(cfg->username_check, KG_USERNAME_REWRITE);
	ck_assert_int_eq(cfg->relay, KG_RELAY_OPENSSL);
	ck_assert_str_eq(cfg->log_level, "debug");
	ck_assert_str_eq(cfg->ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
	ck_assert_str_eq(cfg->ciphersuites, "TLS_AES_128_GCM_SHA256");
	ck_assert_str_eq(cfg->groups, "X25519");
	ck_assert_uint_eq(cfg->security_level, 3);
	ck_assert_uint_eq(cfg->crl_grace, 3600);
	ck_assert_uint_eq(cfg->max_connections, 500);
	ck_assert_uint_eq(cfg->max_handshakes, 500);
	ck_assert_uint_eq(cfg->handshake_timeout_ms, 10);
	ck_assert_uint_eq(cfg->connect_timeout_ms, 600000);
	ck_assert_uint_eq(cfg->backend_timeout_ms, 2500);
	ck_assert_uint_eq(cfg->max_connect_bytes, 268435455);
	ck_assert_uint_eq(cfg->refuse_linger_ms, 0);
	ck_assert_uint_eq(cfg->n_backends, 2);
	ck_assert_str_eq(cfg->backends[0].name, "local");
	ck_assert_str_eq(cfg->backends[0].addr.text, "127.0.0.1:1883");
	ck_assert_int_eq(cfg->backends[0].addr.ss.ss_family, AF_INET);
	ck_assert_str_eq(cfg->backends[1].name, "b-2");
	ck_assert(!cfg->backends[0].proxy_v2);
	ck_assert(cfg->backends[1].proxy_v2);
	ck_assert_ptr_eq(kg_config_get0_backend(cfg, "b-2"), &cfg->backends[1]);
	ck_assert_ptr_null(kg_config_get0_backend(cfg, "nope"));
	ck_assert_uint_eq(cfg->n_crls, 2);
	ck_assert_str_eq(cfg->crls[0].ca_name, "factory");
	ck_assert_str_eq(cfg->crls[0].path, "/etc/kg/crl/factory.pem");
	ck_assert_str_eq(cfg->crls[1].ca_name, "Other_CA.v2");
	/* parse_string has no directory: relative paths stay relative */
	ck_assert_str_eq(cfg->crls[1].path, "crl/other.pem");
	free(cfg);
}
END_TEST

START_TEST(test_defaults)
{
	struct kg_config *cfg = cfg_new();
	char err[KG_ERRBUF];

	ck_assert_msg(kg_config_parse_string(BASE, "min.conf", cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg->n_listen, 2);
	ck_assert_str_eq(cfg->listen[0].text, "0.0.0.0:8883");
	ck_assert_int_eq(cfg->listen[0].ss.ss_family, AF_INET);
	ck_assert_str_eq(cfg->listen[1].text, "[::]:8883");
	ck_assert_int_eq(cfg->listen[1].ss.ss_family, AF_INET6);
	ck_assert_uint_eq(cfg->workers, 0);
	ck_assert_str_eq(cfg->cert_file, "c.pem");
	ck_assert_str_eq(cfg->control_socket, "/run/ktlsgate/control.sock");
	ck_assert(cfg->metrics_enabled);
	ck_assert_str_eq(cfg->metrics_listen.text, "127.0.0.1:9883");
	ck_assert_str_eq(cfg->default_backend, "");
	ck_assert_int_eq(cfg->client_id_check, KG_CLIENT_ID_EXACT);
	ck_assert_int_eq(cfg->username_check, KG_USERNAME_STRICT);
	ck_assert_int_eq(cfg->relay, KG_RELAY_AUTO);
	/* issue 16: a shared registry's view and down rule */
	ck_assert_uint_eq(cfg->registry_cache, 200000);
	ck_assert_int_eq(cfg->registry_down, KG_REGDOWN_FAIL_CLOSED);
	ck_assert_uint_eq(cfg->registry_down_seen, 600);
	ck_assert_str_eq(cfg->log_level, "info");
	ck_assert_str_eq(cfg->ciphers,
			 "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
			 "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
			 "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
	ck_assert_str_eq(cfg->ciphersuites,
			 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
	ck_assert_str_eq(cfg->groups, "X25519:P-256:P-384");
	{
		/* 2, or OpenSSL's own default where the system sets it higher */
		SSL_CTX *ctx = SSL_CTX_new(TLS_method());
		int floor;

		ck_assert_ptr_nonnull(ctx);
		floor = SSL_CTX_get_security_level(ctx);
		SSL_CTX_free(ctx);
		ck_assert_uint_eq(cfg->security_level, floor > 2 ? (unsigned)floor : 2u);
	}
	ck_assert_uint_eq(cfg->crl_grace, 0);
	ck_assert_uint_eq(cfg->max_connections, 10000);
	ck_assert_uint_eq(cfg->max_handshakes, 1024);
	ck_assert_uint_eq(cfg->handshake_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->connect_timeout_ms, 10000);
	ck_assert_uint_eq(cfg->backend_timeout_ms, 3000);
	ck_assert_uint_eq(cfg->max_connect_bytes, 65536);
	ck_assert_uint_eq(cfg->refuse_linger_ms, 1000);
	ck_assert_uint_eq(cfg->audit_lines, 10);
	ck_assert_uint_eq(cfg->audit_lines_total, 100);
	ck_assert_uint_eq(cfg->audit_interval_ms, 10000);
	ck_assert_uint_eq(cfg->idle_timeout, 600);
	ck_assert_uint_eq(cfg->tcp_keepalive_idle, 60);
	ck_assert_uint_eq(cfg->tcp_keepalive_interval, 10);
	ck_assert_uint_eq(cfg->tcp_keepalive_count, 6);
	ck_assert_uint_eq(cfg->metrics_max_connections, 256);
	ck_assert_uint_eq(cfg->metrics_max_per_ip, 8);
	ck_assert_uint_eq(cfg->metrics_timeout, 5);
	ck_assert_uint_eq(cfg->n_backends, 0);
	ck_assert_uint_eq(cfg->n_crls, 0);
	free(cfg);
}
END_TEST

START_TEST(test_accepted_variants)
{
	/* Syntax that must parse: BOM, CRLF, '#' and ';' comments, an empty [crl],
	 * metrics off, listen with odd separators. */
	static const char text[] = "\xEF\xBB\xBF# hello\r\n"
				   "[daemon]\r\n"
				   "cert = c.pem\r\n"
				   "key=k.pem\n"
				   "registry = r.db   ; trailing comment\n"
				   "metrics_listen = off\n"
				   "listen = ,1.2.3.4:1,,\t[::ffff:10.0.0.1]:2 ,\n"
				   "[crl] ; nothing revoked yet\n"
				   "\n";
	struct kg_config *cfg = cfg_new();
	char err[KG_ERRBUF];

	ck_assert_msg(kg_config_parse_string(text, "v.conf", cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(cfg->cert_file, "c.pem");
	ck_assert_str_eq(cfg->registry, "r.db");
	ck_assert(!cfg->metrics_enabled);
	ck_assert_uint_eq(cfg->n_listen, 2);
	ck_assert_str_eq(cfg->listen[1].text, "[::ffff:10.0.0.1]:2");
	ck_assert_uint_eq(cfg->n_crls, 0);
	free(cfg);
}
END_TEST

struct bad_case {
	const char *text;
	const char *want; /* substring of the message, including FILE:LINE */
};

#define LONG60 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct bad_case bad_cases[] = {
	{ BASE "bogus = 1\n", "bad.conf:5: unknown key 'bogus' in [daemon]" },
	/* issue 13: resumption; 0 is no lifetime (resumption = off says that) */
	{ BASE "[tls]\nticket_lifetime = 0\n", "'ticket_lifetime': '0' is not a duration in 20s..604800s" },
	{ BASE "[tls]\nticket_lifetime = 19s\n", "not a duration" },
	{ BASE "[tls]\nticket_lifetime = 8d\n", "not a duration" },
	{ BASE "[tls]\nticket_lifetime = 2x\n", "not a duration" },
	{ BASE "[tls]\nticket_lifetime = h\n", "not a duration" },
	{ BASE "[tls]\nticket_lifetime = -5m\n", "not a duration" },
	{ BASE "[tls]\nticket_lifetime = 99999999999d\n", "not a duration" },
	{ BASE "[tls]\nresumption = maybe\n", "'resumption': 'maybe' is not one of on, off, yes, no" },
	{ BASE "[tls]\nciphers = x\nworkers = 1\n", "bad.conf:7: unknown key 'workers' in [tls]" },
	{ BASE "[bogus]\n", "bad.conf:5: unknown section [bogus]" },
	{ BASE "[Daemon]\n", "bad.conf:5: unknown section [Daemon]" },
	{ BASE "[daemon]\n", "bad.conf:5: duplicate section [daemon] (first on line 1)" },
	{ BASE "listen = 1.2.3.4\n", "bad.conf:5: 'listen': bad address '1.2.3.4': missing :port" },
	{ BASE "listen = 1.2.3.4:http\n", "bad.conf:5: 'listen': bad address '1.2.3.4:http': port" },
	{ BASE "listen = 1.2.3.4:0\n", "bad.conf:5: 'listen': bad address '1.2.3.4:0': port must be a number in 1..65535" },
	{ BASE "listen = [::]:70000\n", "bad.conf:5: 'listen': bad address '[::]:70000': port" },
	{ BASE "listen = 1.2.3.999:80\n", "bad.conf:5: 'listen': bad address '1.2.3.999:80': not a numeric IPv4" },
	{ BASE "listen = localhost:80\n", "bad.conf:5: 'listen': bad address 'localhost:80'" },
	{ BASE "listen = ::1:80\n", "bad.conf:5: 'listen': bad address '::1:80'" },
	{ BASE "listen = [1.2.3.4]:80\n", "bad.conf:5: 'listen': bad address '[1.2.3.4]:80': not a numeric IPv6" },
	{ BASE "listen = 1.2.3.4:1 1.2.3.4:1\n", "bad.conf:5: 'listen': address '1.2.3.4:1' given twice" },
	{ BASE "listen = ,\n", "bad.conf:5: 'listen': empty list" },
	{ BASE "listen = 1.1.1.1:1 1.1.1.1:2 1.1.1.1:3 1.1.1.1:4 1.1.1.1:5 1.1.1.1:6 1.1.1.1:7 "
	       "1.1.1.1:8 1.1.1.1:9 1.1.1.1:10 1.1.1.1:11 1.1.1.1:12 1.1.1.1:13 1.1.1.1:14 "
	       "1.1.1.1:15 1.1.1.1:16 1.1.1.1:17\n",
	  "bad.conf:5: 'listen': too many addresses (max 16 over all listeners)" },
	/* issue 15: typed listeners */
	{ BASE "[listener a]\nlisten = 1.2.3.4:1\n", "bad.conf:5: listener 'a' has no 'type'" },
	{ BASE "[listener a]\ntype = tls\n", "bad.conf:5: listener 'a' has no 'listen'" },
	{ BASE "[listener a]\ntype = quic\n", "bad.conf:6: listener 'a': type 'quic' is not one of mtls, tls, plain" },
	{ BASE "[listener a]\ntype = plain\nlisten = 1.2.3.4:1\n",
	  "bad.conf:6: listener 'a': type plain carries passwords and tokens in clear text" },
	{ BASE "[listener a]\ntype = plain\nlisten = 1.2.3.4:1\nallow_plain = sure\n",
	  "bad.conf:8: listener 'a': allow_plain 'sure': want yes or no" },
	{ BASE "[listener a]\ntype = tls\nlisten = 1.2.3.4:1\nallow_plain = yes\n",
	  "bad.conf:8: listener 'a': allow_plain is for type plain only" },
	{ BASE "[listener a]\ntype = plain\nallow_plain = yes\nlisten = 1.2.3.4:1\nx509_only = yes\n",
	  "bad.conf:9: listener 'a': x509_only = yes on a plain listener would refuse every device" },
	{ BASE "[listener a]\ntype = tls\nlisten = 1.2.3.4:1\nx509_only = 1\n",
	  "bad.conf:8: listener 'a': x509_only '1': want yes or no" },
	{ BASE "[listener a]\ntype = tls\ntype = mtls\n",
	  "bad.conf:7: duplicate key 'type' in [listener a] (first on line 6)" },
	{ BASE "[listener a]\nport = 1\n", "bad.conf:6: unknown key 'port' in [listener a]" },
	{ BASE "[listener default]\n", "bad.conf:5: listener name 'default' is [daemon] listen's" },
	{ BASE "[listener a]\ntype = tls\nlisten = 1.2.3.4:1\n[listener a]\n",
	  "bad.conf:8: duplicate listener 'a'" },
	{ BASE "[listener a/b]\n", "bad.conf:5: [listener a/b]: bad listener name" },
	{ BASE "listen = 1.2.3.4:1\n[listener a]\ntype = tls\nlisten = 1.2.3.4:1\n",
	  "bad.conf:8: 'listen': address '1.2.3.4:1' given twice: also in listener default" },
	{ BASE "[listener a]\ntype = tls\nlisten = 1.2.3.4:1\n[listener b]\ntype = tls\nlisten = 1.2.3.4:1\n",
	  "bad.conf:10: 'listen': address '1.2.3.4:1' given twice: also in listener a" },
	{ BASE "[listener p]\ntype = proxy\nlisten = 1.2.3.4:1\n",
	  "bad.conf:5: listener 'p': type proxy needs proxy_sources" },
	{ BASE "[listener p]\ntype = tls\nlisten = 1.2.3.4:1\nproxy_sources = 10.0.0.1\n",
	  "bad.conf:8: listener 'p': proxy_sources is for type proxy only" },
	{ BASE "[listener p]\ntype = tls\nlisten = 1.2.3.4:1\nproxy_require_crc = yes\n",
	  "bad.conf:8: listener 'p': proxy_require_crc is for type proxy only" },
	{ BASE "[listener p]\ntype = proxy\nproxy_sources = 10.0.0.1/33\n",
	  "bad.conf:7: listener 'p': proxy_sources: '10.0.0.1/33': prefix length must be 0..32" },
	{ BASE "[listener p]\ntype = proxy\nproxy_sources = 10.0.0.1/8\n",
	  "bad.conf:7: listener 'p': proxy_sources: '10.0.0.1/8': host bits set below the prefix length" },
	{ BASE "[listener p]\ntype = proxy\nproxy_sources = fe80::1/129\n",
	  "bad.conf:7: listener 'p': proxy_sources: 'fe80::1/129': prefix length must be 0..128" },
	{ BASE "[listener p]\ntype = proxy\nproxy_sources = front.example\n",
	  "bad.conf:7: listener 'p': proxy_sources: 'front.example': not a numeric IPv4 or IPv6 address" },
	{ BASE "[listener p]\ntype = proxy\nproxy_sources = ,\n",
	  "bad.conf:7: listener 'p': proxy_sources: empty list" },
	{ BASE "[listener p]\ntype = proxy\nproxy_ca = a b\n",
	  "bad.conf:7: listener 'p': proxy_ca 'a b' is not a CA name" },
	{ BASE "[listener a1]\n[listener a2]\n[listener a3]\n[listener a4]\n[listener a5]\n"
	       "[listener a6]\n[listener a7]\n[listener a8]\n", "bad.conf:12: too many listeners (max 7)" },
	{ BASE "metrics_listen = on\n", "bad.conf:5: 'metrics_listen': bad address 'on'" },
	{ "[daemon]\ncert = c\nkey\nregistry = r\n", "bad.conf:3: syntax error" },
	{ "[daemon\ncert = c\n", "bad.conf:1: section header without ']'" },
	{ "[daemon] x\n", "bad.conf:1: unexpected text after ']'" },
	{ BASE "cert = again\n", "bad.conf:5: duplicate key 'cert' in [daemon] (first on line 2)" },
	{ "[daemon]\ncert = c\n  key = k\n", "bad.conf:3: continuation lines are not supported" },
	{ "cert = c\n", "bad.conf:1: key 'cert' outside any section" },
	{ BASE "[backend a]\naddress = 1.2.3.4:1\n[backend a]\naddress = 1.2.3.4:2\n",
	  "bad.conf:7: duplicate backend 'a'" },
	{ BASE "[backend a]\naddress = 1.2.3.4:1\naddress = 1.2.3.4:2\n",
	  "bad.conf:7: duplicate key 'address' in [backend a] (first on line 6)" },
	{ BASE "[backend a]\naddress = 1.2.3.4:1\nproxy_protocol = v1\n",
	  "bad.conf:7: backend 'a': proxy_protocol 'v1': want v2 or off" },
	{ BASE "[backend a]\nproxy_protocol = v2\naddress = 1.2.3.4:1\nproxy_protocol = off\n",
	  "bad.conf:8: duplicate key 'proxy_protocol' in [backend a] (first on line 6)" },
	{ BASE "[backend a]\n\n[backend b]\naddress = 1.2.3.4:1\n", "bad.conf:5: backend 'a' has no 'address'" },
	{ BASE "[backend a]\nport = 1\n", "bad.conf:6: unknown key 'port' in [backend a]" },
	{ BASE "[backend a]\naddress = 1.2.3.4:70000\n", "bad.conf:6: backend 'a': bad address '1.2.3.4:70000': port" },
	{ BASE "[backend a/b]\n", "bad.conf:5: [backend a/b]: bad backend name" },
	{ BASE "[backend ]\n", "bad.conf:5: [backend ]: bad backend name" },
	{ BASE "[backend " LONG60 "abcd]\n", "bad.conf:5: [backend " },
	{ BASE "default_backend = nope\n[backend a]\naddress = 1.2.3.4:1\n",
	  "bad.conf:5: default_backend 'nope' has no [backend nope] section" },
	{ BASE "default_backend = a b\n", "bad.conf:5: 'default_backend': 'a b' is not a backend name" },
	{ BASE "[limits]\nmax_connections = 100\nmax_handshakes = 101\n",
	  "bad.conf:7: max_handshakes (101) exceeds max_connections (100)" },
	{ BASE "[limits]\nmax_connections = 100\n", "bad.conf:6: max_handshakes (1024) exceeds max_connections (100)" },
	{ BASE "workers = 12abc\n", "bad.conf:5: 'workers': '12abc' is not a number in 0..256" },
	{ BASE "workers = -1\n", "bad.conf:5: 'workers': '-1' is not a number in 0..256" },
	{ BASE "workers = +1\n", "bad.conf:5: 'workers': '+1' is not a number" },
	{ BASE "workers = 257\n", "bad.conf:5: 'workers': '257' is not a number in 0..256" },
	{ BASE "workers =\n", "bad.conf:5: 'workers': empty value" },
	{ BASE "[limits]\nmax_connections = 99999999999999999999999\n",
	  "bad.conf:6: 'max_connections': '99999999999999999999999' is not a number in 1..1000000" },
	{ BASE "[limits]\nmax_connections = 4294967297\n", "bad.conf:6: 'max_connections': '4294967297'" },
	{ BASE "[limits]\nmax_connections = 0\n", "bad.conf:6: 'max_connections': '0' is not a number in 1..1000000" },
	{ BASE "[limits]\nhandshake_timeout_ms = 9\n", "bad.conf:6: 'handshake_timeout_ms': '9' is not a number in 10..600000" },
	{ BASE "[limits]\nmax_connect_bytes = 268435456\n", "bad.conf:6: 'max_connect_bytes': '268435456' is not a number in 64..268435455" },
	/* issue 10: audit flood guard, idle sessions, metrics endpoint */
	{ BASE "[limits]\naudit_interval_ms = 99\n", "bad.conf:6: 'audit_interval_ms': '99' is not a number in 100..3600000" },
	{ BASE "[limits]\nidle_timeout = 604801\n", "bad.conf:6: 'idle_timeout': '604801' is not a number in 0..604800" },
	{ BASE "[limits]\ntcp_keepalive_count = 0\n", "bad.conf:6: 'tcp_keepalive_count': '0' is not a number in 1..127" },
	{ BASE "[limits]\ntcp_keepalive_interval = 0\n", "bad.conf:6: 'tcp_keepalive_interval': '0' is not a number in 1..32767" },
	{ BASE "[limits]\nmetrics_timeout = 0\n", "bad.conf:6: 'metrics_timeout': '0' is not a number in 1..3600" },
	{ BASE "[limits]\nmetrics_max_per_ip = 300\n", "bad.conf:6: metrics_max_per_ip (300) exceeds metrics_max_connections (256)" },
	{ "[daemon]\nkey = k\nregistry = r\n", "bad.conf: missing required key 'cert' in [daemon]" },
	{ "[daemon]\ncert = c\nregistry = r\n", "bad.conf: missing required key 'key' in [daemon]" },
	{ "[daemon]\ncert = c\nkey = k\n", "bad.conf: missing required key 'registry' in [daemon]" },
	{ "", "bad.conf: missing required key 'cert' in [daemon]" },
	{ BASE "client_id_check = maybe\n", "bad.conf:5: 'client_id_check': 'maybe' is not one of exact, off" },
	{ BASE "registry_down = open\n", "bad.conf:5: 'registry_down': 'open' is not one of fail-closed, fail-open" },
	{ BASE "registry_down_seen = 0\n", "bad.conf:5: 'registry_down_seen': '0' is not a number in 1..604800" },
	{ BASE "registry_cache = 0\n", "bad.conf:5: 'registry_cache': '0' is not a number in 1..16777216" },
	{ BASE "username_check = exact\n", "bad.conf:5: 'username_check': 'exact' is not one of strict, rewrite, pass" },
	{ BASE "username_check = strict\nusername_check = pass\n", "bad.conf:6: duplicate key 'username_check' in [daemon] (first on line 5)" },
	{ BASE "relay = kernel\n", "bad.conf:5: 'relay': 'kernel' is not one of auto, ktls_tx, userspace, openssl" },
	{ BASE "log_level = verbose\n", "bad.conf:5: 'log_level': 'verbose' is not one of err, warn, info, debug" },
	{ BASE "[crl]\nbad/name = x.pem\n", "bad.conf:6: [crl]: 'bad/name' is not a CA name" },
	{ BASE "[crl]\nca = a.pem\nca = b.pem\n", "bad.conf:7: duplicate key 'ca' in [crl]" },
	{ BASE "[crl]\nca =\n", "bad.conf:6: 'ca': empty value" },
	{ BASE "[tls]\nsecurity_level = 0\n",
	  "bad.conf:6: security_level 0 is below OpenSSL's default level" },
	{ BASE "[tls]\nsecurity_level = 6\n", "bad.conf:6: 'security_level': '6' is not a number in 0..5" },
	{ BASE "[tls]\nsecurity_level = high\n", "bad.conf:6: 'security_level': 'high' is not a number" },
	{ BASE "[tls]\ncrl_grace = 2592001\n", "bad.conf:6: 'crl_grace': '2592001' is not a number in 0..2592000" },
	{ BASE "[tls]\ncrl_grace = 1h\n", "bad.conf:6: 'crl_grace': '1h' is not a number" },
	{ BASE "[tls]\ngroups = " LONG60 LONG60 LONG60 "\n", "bad.conf:6: 'groups': value too long (max 127 bytes)" },
	{ BASE "cert = " LONG60 LONG60 LONG60 LONG60 "\n", "bad.conf:5: line too long" },
};

/* Typed listeners: the flat address list keeps each address's listener; [daemon]
 * listen's is "default" (mtls); without any address the defaults are mtls on 8883. */
START_TEST(test_listeners)
{
	struct kg_config *cfg = cfg_new();
	char err[KG_ERRBUF];
	const struct kg_listener_conf *l;
	volatile size_t far = 1;   /* opaque to gcc's bounds warning: checked at run time */

	ck_assert_msg(kg_config_parse_string(BASE "listen = 127.0.0.1:8883\n"
					     "[listener one-way]\ntype = tls\n"
					     "listen = 127.0.0.1:8884, [::1]:8884\nx509_only = no\n"
					     "[listener closed-net]\ntype = plain\nallow_plain = yes\n"
					     "listen = 10.0.0.1:1883\n"
					     "[listener certs]\ntype = tls\nx509_only = yes\n"
					     "listen = 127.0.0.1:8885\n",
					     "l.conf", cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg->n_listeners, 4);
	ck_assert_uint_eq(cfg->n_listen, 5);
	l = kg_config_listener_of(cfg, 0);
	ck_assert_str_eq(l->name, "default");
	ck_assert_int_eq(l->kind, KG_LISTENER_MTLS);
	l = kg_config_listener_of(cfg, 2);
	ck_assert_str_eq(cfg->listen[2].text, "[::1]:8884");
	ck_assert_str_eq(l->name, "one-way");
	ck_assert_int_eq(l->kind, KG_LISTENER_TLS);
	ck_assert(!l->x509_only);
	l = kg_config_listener_of(cfg, 3);
	ck_assert_str_eq(l->name, "closed-net");
	ck_assert_int_eq(l->kind, KG_LISTENER_PLAIN);
	ck_assert(l->allow_plain);
	l = kg_config_listener_of(cfg, 4);
	ck_assert_str_eq(l->name, "certs");
	ck_assert(l->x509_only);
	/* an index past the list falls back to the default listener, never past the array */
	ck_assert_ptr_eq(kg_config_listener_of(cfg, cfg->n_listen + far), &cfg->listeners[0]);

	/* proxy: sources as blocks, the CRC rule, the front's CA */
	ck_assert_msg(kg_config_parse_string(BASE "[listener front]\ntype = proxy\n"
					     "listen = 127.0.0.1:1884\nproxy_sources = 10.1.0.0/16, "
					     "192.0.2.7 2001:db8::/32\nproxy_require_crc = yes\n"
					     "proxy_ca = factory\n",
					     "l.conf", cfg, err, sizeof(err)) == 0, "%s", err);
	l = &cfg->listeners[1];
	ck_assert_int_eq(l->kind, KG_LISTENER_PROXY);
	ck_assert_uint_eq(l->n_proxy_sources, 3);
	ck_assert_uint_eq(l->proxy_sources[0].bits, 16);
	ck_assert_uint_eq(l->proxy_sources[1].bits, 32);
	ck_assert_int_eq(l->proxy_sources[2].family, AF_INET6);
	ck_assert(l->proxy_require_crc);
	ck_assert_str_eq(l->proxy_ca, "factory");

	/* a [listener] alone: no default 8883 beside it */
	ck_assert_msg(kg_config_parse_string(BASE "[listener only]\ntype = tls\nlisten = 127.0.0.1:9\n",
					     "l.conf", cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg->n_listen, 1);
	ck_assert_str_eq(kg_config_listener_of(cfg, 0)->name, "only");

	/* nothing at all: 0.0.0.0:8883 and [::]:8883, both the default mtls listener */
	ck_assert_msg(kg_config_parse_string(BASE, "l.conf", cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg->n_listen, 2);
	ck_assert_uint_eq(cfg->n_listeners, 1);
	ck_assert_int_eq(kg_config_listener_of(cfg, 1)->kind, KG_LISTENER_MTLS);
	free(cfg);
}
END_TEST

/* kg_cidr_match: prefixes of every length, both families, v4-mapped v6 as v4. */
START_TEST(test_cidr_match)
{
	struct kg_config *cfg = cfg_new();
	char err[KG_ERRBUF];
	const struct kg_listener_conf *l;
	static const struct {
		const char *addr;
		bool in;
	} cases[] = {
		{ "10.1.255.3", true }, { "10.2.0.1", false }, { "192.0.2.7", true },
		{ "192.0.2.6", false }, { "172.16.0.1", true }, { "172.31.255.255", true },
		{ "172.32.0.0", false }, { "2001:db8::5", true }, { "2001:db9::5", false },
		{ "::ffff:10.1.2.3", true }, { "::ffff:10.3.2.3", false }, { "::1", false },
		{ "fe80::1:2", true }, { "fe80::2:0", false },
	};

	ck_assert_msg(kg_config_parse_string(BASE "[listener f]\ntype = proxy\nlisten = 127.0.0.1:1\n"
					     "proxy_sources = 10.1.0.0/16 192.0.2.7 172.16.0.0/12 "
					     "2001:db8::/32 fe80::1:0/112\n",
					     "l.conf", cfg, err, sizeof(err)) == 0, "%s", err);
	l = &cfg->listeners[1];
	for (size_t i = 0; i < KG_NITEMS(cases); i++) {
		struct sockaddr_storage ss;
		socklen_t len;

		memset(&ss, 0, sizeof(ss));
		if (strchr(cases[i].addr, ':') != NULL) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

			s6->sin6_family = AF_INET6;
			ck_assert_int_eq(inet_pton(AF_INET6, cases[i].addr, &s6->sin6_addr), 1);
			len = sizeof(*s6);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

			s4->sin_family = AF_INET;
			ck_assert_int_eq(inet_pton(AF_INET, cases[i].addr, &s4->sin_addr), 1);
			len = sizeof(*s4);
		}
		ck_assert_msg(kg_cidr_match(l->proxy_sources, l->n_proxy_sources,
					    (struct sockaddr *)&ss, len) == cases[i].in,
			      "%s: want %s", cases[i].addr, cases[i].in ? "in" : "out");
		/* a short length never reads past it */
		ck_assert(!kg_cidr_match(l->proxy_sources, l->n_proxy_sources, (struct sockaddr *)&ss, 2));
	}
	free(cfg);
}
END_TEST

/* [tls] resumption and ticket_lifetime (issue 13): default on, 2 h; units. */
START_TEST(test_resumption_keys)
{
	static const struct { const char *v; unsigned s; } ok[] = {
		{ "60", 60 }, { "90s", 90 }, { "30m", 1800 }, { "2h", 7200 }, { "7d", 604800 },
	};
	struct kg_config *cfg = cfg_new();
	char err[KG_ERRBUF], text[256];

	ck_assert_msg(kg_config_parse_string(BASE, "r.conf", cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert(cfg->resumption);
	ck_assert_uint_eq(cfg->ticket_lifetime, 7200);
	for (size_t i = 0; i < KG_NITEMS(ok); i++) {
		snprintf(text, sizeof(text), BASE "[tls]\nresumption = off\nticket_lifetime = %s\n", ok[i].v);
		ck_assert_msg(kg_config_parse_string(text, "r.conf", cfg, err, sizeof(err)) == 0, "%s", err);
		ck_assert(!cfg->resumption);
		ck_assert_uint_eq(cfg->ticket_lifetime, ok[i].s);
	}
	free(cfg);
}
END_TEST

/* [tls] resumption_psk_ke: off by default; allow anywhere; prefer only where OpenSSL
 * can choose psk_ke over a key share (3.2's SSL_OP_PREFER_NO_DHE_KEX), else a clear
 * refusal rather than a quiet downgrade to allow. */
START_TEST(test_resumption_psk_ke)
{
	struct kg_config *cfg = cfg_new();
	char err[KG_ERRBUF];

	ck_assert_msg(kg_config_parse_string(BASE, "p.conf", cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(cfg->resumption_psk_ke, KG_PSK_KE_OFF);
	ck_assert_msg(kg_config_parse_string(BASE "[tls]\nresumption_psk_ke = allow\n", "p.conf", cfg,
					     err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(cfg->resumption_psk_ke, KG_PSK_KE_ALLOW);
	ck_assert_msg(kg_config_parse_string(BASE "[tls]\nresumption_psk_ke = off\n", "p.conf", cfg,
					     err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(cfg->resumption_psk_ke, KG_PSK_KE_OFF);
	memset(err, 0, sizeof(err));
#ifdef SSL_OP_PREFER_NO_DHE_KEX
	ck_assert_msg(kg_config_parse_string(BASE "[tls]\nresumption_psk_ke = prefer\n", "p.conf", cfg,
					     err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(cfg->resumption_psk_ke, KG_PSK_KE_PREFER);
#else
	ck_assert_int_eq(kg_config_parse_string(BASE "[tls]\nresumption_psk_ke = prefer\n", "p.conf",
						cfg, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "p.conf:6: 'resumption_psk_ke': 'prefer' needs OpenSSL 3.2 or later") != NULL,
		      "%s", err);
#endif
	memset(err, 0, sizeof(err));
	ck_assert_int_eq(kg_config_parse_string(BASE "[tls]\nresumption_psk_ke = yes\n", "p.conf", cfg,
						err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "p.conf:6: 'resumption_psk_ke': 'yes' is not one of off, allow, prefer") != NULL,
		      "%s", err);
	free(cfg);
}
END_TEST

START_TEST(test_bad_configs)
{
	const struct bad_case *c = &bad_cases[_i];
	struct kg_config *cfg = cfg_new();
	char err[KG_ERRBUF];

	memset(err, 0, sizeof(err));
	ck_assert_msg(kg_config_parse_string(c->text, "bad.conf", cfg, err, sizeof(err)) == -1,
		      "case %d parsed: %s", _i, c->text);
	ck_assert_msg(strstr(err, c->want) != NULL, "case %d: got \"%s\", want \"%s\"", _i, err,
		      c->want);
	free(cfg);
}
END_TEST

/* Many backends / CRLs: one over the limit fails on that line. */
START_TEST(test_too_many)
{
	size_t cap = 64 * 1024, n = 0;
	char *text = malloc(cap);
	struct kg_config *cfg = cfg_new();
	char err[KG_ERRBUF];

	ck_assert_ptr_nonnull(text);
	n += (size_t)snprintf(text + n, cap - n, "%s", BASE);
	for (int i = 0; i <= KG_MAX_BACKENDS; i++)
		n += (size_t)snprintf(text + n, cap - n, "[backend b%d]\naddress = 10.0.0.1:%d\n", i, i + 1);
	ck_assert_int_eq(kg_config_parse_string(text, "many.conf", cfg, err, sizeof(err)), -1);
	/* BASE is 4 lines; backend i starts on line 5 + 2i */
	ck_assert_str_eq(err, "many.conf:133: too many backends (max 64)");

	n = 0;
	n += (size_t)snprintf(text + n, cap - n, "%s[crl]\n", BASE);
	for (int i = 0; i <= KG_MAX_CRLS; i++)
		n += (size_t)snprintf(text + n, cap - n, "ca%d = crl%d.pem\n", i, i);
	ck_assert_int_eq(kg_config_parse_string(text, "many.conf", cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "many.conf:70: too many CRLs (max 64)");
	free(text);
	free(cfg);
}
END_TEST

struct addr_case {
	const char *text;
	int rc;
	int family;
	unsigned port;
};

static const struct addr_case addr_cases[] = {
	{ "0.0.0.0:8883", 0, AF_INET, 8883 },
	{ "127.0.0.1:1", 0, AF_INET, 1 },
	{ "255.255.255.255:65535", 0, AF_INET, 65535 },
	{ "[::]:8883", 0, AF_INET6, 8883 },
	{ "[::1]:1883", 0, AF_INET6, 1883 },
	{ "[2001:db8::42]:443", 0, AF_INET6, 443 },
	{ "[::ffff:192.0.2.1]:80", 0, AF_INET6, 80 },
	{ "1.2.3.4:0", -1, 0, 0 },
	{ "1.2.3.4:65536", -1, 0, 0 },
	{ "1.2.3.4:99999999999999999999", -1, 0, 0 },
	{ "1.2.3.4:-1", -1, 0, 0 },
	{ "1.2.3.4:+80", -1, 0, 0 },
	{ "1.2.3.4: 80", -1, 0, 0 },
	{ "1.2.3.4:80x", -1, 0, 0 },
	{ "1.2.3.4:", -1, 0, 0 },
	{ "1.2.3.4", -1, 0, 0 },
	{ ":80", -1, 0, 0 },
	{ "[]:80", -1, 0, 0 },
	{ "[::1]", -1, 0, 0 },
	{ "[::1]80", -1, 0, 0 },
	{ "[::1:80", -1, 0, 0 },
	{ "::1:80", -1, 0, 0 },
	{ "1.2.3:80", -1, 0, 0 },
	{ "example.com:80", -1, 0, 0 },
	{ "[fe80::1%eth0]:80", -1, 0, 0 },
	{ "", -1, 0, 0 },
	{ "[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000]:1", -1, 0, 0 },
};

START_TEST(test_sockaddr_parse)
{
	const struct addr_case *c = &addr_cases[_i];
	struct kg_sockaddr sa;

	memset(&sa, 0, sizeof(sa));
	ck_assert_msg(kg_sockaddr_parse(c->text, &sa) == c->rc, "case %d '%s'", _i, c->text);
	if (c->rc != 0)
		return;
	ck_assert_str_eq(sa.text, c->text);
	ck_assert_int_eq(sa.ss.ss_family, c->family);
	if (c->family == AF_INET) {
		ck_assert_uint_eq(sa.len, sizeof(struct sockaddr_in));
		ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&sa.ss)->sin_port), c->port);
	} else {
		ck_assert_uint_eq(sa.len, sizeof(struct sockaddr_in6));
		ck_assert_uint_eq(ntohs(((struct sockaddr_in6 *)&sa.ss)->sin6_port), c->port);
	}
}
END_TEST

START_TEST(test_load_missing)
{
	struct kg_config *cfg = cfg_new();
	char err[KG_ERRBUF];

	ck_assert_int_eq(kg_config_load("/nonexistent/ktlsgate.conf", cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "/nonexistent/ktlsgate.conf: cannot open: No such file or directory");
	free(cfg);
}
END_TEST

START_TEST(test_load_relative_paths)
{
	static const char text[] = "[daemon]\n"
				   "cert = server/chain.pem\n"
				   "key = /abs/key.pem\n"
				   "registry = registry.db\n"
				   "control_socket = run/ctl.sock\n"
				   "[crl]\n"
				   "factory = crl/factory.pem\n";
	struct kg_config *cfg = cfg_new();
	char dir[PATH_MAX], real[PATH_MAX], path[PATH_MAX], want[PATH_MAX + 32];
	char err[KG_ERRBUF];

	kg_test_tmpdir(dir, sizeof(dir));
	ck_assert_ptr_nonnull(realpath(dir, real));
	fmt(path, sizeof(path), "%s/ktlsgate.conf", dir);
	kg_test_write_file(path, text, strlen(text));

	ck_assert_msg(kg_config_load(path, cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(cfg->path, path);
	fmt(want, sizeof(want), "%s/server/chain.pem", real);
	ck_assert_str_eq(cfg->cert_file, want);
	ck_assert_str_eq(cfg->key_file, "/abs/key.pem");
	fmt(want, sizeof(want), "%s/registry.db", real);
	ck_assert_str_eq(cfg->registry, want);
	fmt(want, sizeof(want), "%s/run/ctl.sock", real);
	ck_assert_str_eq(cfg->control_socket, want);
	fmt(want, sizeof(want), "%s/crl/factory.pem", real);
	ck_assert_str_eq(cfg->crls[0].path, want);

	/* Errors from a file name the file and the line. */
	kg_test_write_file(path, "[daemon]\n\nnope = 1\n", 19);
	ck_assert_int_eq(kg_config_load(path, cfg, err, sizeof(err)), -1);
	fmt(want, sizeof(want), "%s:3: unknown key 'nope' in [daemon]", path);
	ck_assert_str_eq(err, want);

	/* A NUL byte is refused, not silently cut. */
	kg_test_write_file(path, "[daemon]\ncert = a\0b\n", 20);
	ck_assert_int_eq(kg_config_load(path, cfg, err, sizeof(err)), -1);
	fmt(want, sizeof(want), "%s:2: NUL byte in file", path);
	ck_assert_str_eq(err, want);

	/* A directory is not a config file. */
	ck_assert_int_eq(kg_config_load(dir, cfg, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a regular file"));

	kg_test_rmdir(dir);
	free(cfg);
}
END_TEST

/* A relative path that fits its line but not PATH_MAX once the (deep) config
 * directory is prefixed: an error, never a truncated path. */
START_TEST(test_load_path_too_long)
{
	struct kg_config *cfg = cfg_new();
	char dir[PATH_MAX], deep[PATH_MAX], path[PATH_MAX], comp[201], text[512];
	char err[KG_ERRBUF];
	size_t n;

	kg_test_tmpdir(dir, sizeof(dir));
	memset(comp, 'd', 200);
	comp[200] = '\0';
	fmt(deep, sizeof(deep), "%s", dir);
	n = strlen(deep);
	while (n + 201 < PATH_MAX - 40) {
		fmt(deep + n, sizeof(deep) - n, "/%s", comp);
		n += 201;
		ck_assert_int_eq(mkdir(deep, 0700), 0);
	}
	fmt(path, sizeof(path), "%s/k.conf", deep);
	fmt(text, sizeof(text),
		 "[daemon]\ncert = c.pem\nkey = k.pem\nregistry = %.150s\n", comp);
	kg_test_write_file(path, text, strlen(text));

	ck_assert_int_eq(kg_config_load(path, cfg, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, ":4: 'registry': path '") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "too long (max 4095 bytes once resolved)") != NULL, "%s", err);

	kg_test_rmdir(dir);
	free(cfg);
}
END_TEST

START_TEST(test_example_config)
{
	struct kg_config *cfg = cfg_new();
	char err[KG_ERRBUF];

	ck_assert_msg(kg_config_load("../../docs/examples/ktlsgate.conf", cfg, err, sizeof(err)) == 0,
		      "%s", err);
	ck_assert_str_eq(cfg->cert_file, "/etc/ktlsgate/server/chain.pem");
	ck_assert_str_eq(cfg->registry, "/var/lib/ktlsgate/registry.db");
	ck_assert_uint_eq(cfg->n_listen, 2);
	ck_assert_ptr_nonnull(kg_config_get0_backend(cfg, "local"));
	ck_assert_str_eq(kg_config_get0_backend(cfg, "local")->addr.text, "127.0.0.1:1883");
	ck_assert_str_eq(cfg->default_backend, "local");
	free(cfg);
}
END_TEST

/* A failed parse leaves a message even with a tiny buffer, and never overruns it. */
START_TEST(test_small_errbuf)
{
	struct kg_config *cfg = cfg_new();
	char err[12];

	memset(err, 'X', sizeof(err));
	ck_assert_int_eq(kg_config_parse_string(BASE "bogus = 1\n", "bad.conf", cfg, err, 8), -1);
	ck_assert_str_eq(err, "bad.con");
	ck_assert_int_eq(err[8], 'X');
	ck_assert_int_eq(kg_config_parse_string(BASE "bogus = 1\n", "bad.conf", cfg, NULL, 0), -1);
	free(cfg);
}
END_TEST

/* `registry =` takes a libpq URI as is, resolves a relative file as before, and refuses
 * another scheme naming the key and line, without printing a password. */
START_TEST(test_registry_location)
{
	static const char pre[] = "[daemon]\ncert = c.pem\nkey = k.pem\n";
	static const struct {
		const char *value, *want;
	} ok[] = {
		{ "postgresql://kg@db.example:5432/ktlsgate", "postgresql://kg@db.example:5432/ktlsgate" },
		{ "postgres:///ktlsgate?host=/run/postgresql", "postgres:///ktlsgate?host=/run/postgresql" },
		{ "postgresql://kg:s3cret@h/db", "postgresql://kg:s3cret@h/db" },
		{ "r.db", "r.db" },   /* parse_string: no directory to resolve against */
		{ "sub/postgresql.db", "sub/postgresql.db" },
		{ "/var/lib/x:y.db", "/var/lib/x:y.db" },
	};
	static const struct {
		const char *value, *want;
	} bad[] = {
		{ "postgresq://h/db", "t.conf:4: 'registry': 'postgresq://h/db' is neither a file path "
				      "nor a PostgreSQL URI (postgresql://... or postgres://...)" },
		/* the message shows no password, whatever the scheme */
		{ "mysql://u:hunter2@h/db", "t.conf:4: 'registry': 'mysql://u:***@h/db' is neither "
					    "a file path nor a PostgreSQL URI (postgresql://... or postgres://...)" },
		{ "sqlite://r.db", "t.conf:4: 'registry': 'sqlite://r.db' is neither a file path nor a "
				   "PostgreSQL URI (postgresql://... or postgres://...)" },
	};
	struct kg_config *cfg = cfg_new();
	char text[512], err[KG_ERRBUF];

	for (size_t i = 0; i < KG_NITEMS(ok); i++) {
		fmt(text, sizeof(text), "%sregistry = %s\n", pre, ok[i].value);
		ck_assert_msg(kg_config_parse_string(text, "/etc/kg/t.conf", cfg, err, sizeof(err)) == 0,
			      "%s: %s", ok[i].value, err);
		ck_assert_str_eq(cfg->registry, ok[i].want);
	}
	for (size_t i = 0; i < KG_NITEMS(bad); i++) {
		fmt(text, sizeof(text), "%sregistry = %s\n", pre, bad[i].value);
		ck_assert_int_eq(kg_config_parse_string(text, "t.conf", cfg, err, sizeof(err)), -1);
		ck_assert_str_eq(err, bad[i].want);
	}
	free(cfg);
}
END_TEST

START_TEST(test_registry_location_redact)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "/var/lib/ktlsgate/registry.db", "/var/lib/ktlsgate/registry.db" },
		{ "/tmp/a:b@c.db", "/tmp/a:b@c.db" },
		{ "postgresql://kg:s3cret@db:5432/ktlsgate", "postgresql://kg:***@db:5432/ktlsgate" },
		{ "postgres://kg:s3cret@db", "postgres://kg:***@db" },
		{ "postgresql://kg@db/ktlsgate", "postgresql://kg@db/ktlsgate" },
		{ "postgresql://kg:@db/x", "postgresql://kg:***@db/x" },
		{ "postgresql://db/ktlsgate?user=kg&password=s3cret&sslmode=require",
		  "postgresql://db/ktlsgate?user=kg&password=***&sslmode=require" },
		{ "postgresql:///ktlsgate?password=p&host=/run/pg&password=q",
		  "postgresql:///ktlsgate?password=***&host=/run/pg&password=***" },
		{ "postgresql://u:p%40ss@h/d?passfile=/etc/ktlsgate/pgpass",
		  "postgresql://u:***@h/d?passfile=/etc/ktlsgate/pgpass" },
		/* libpq: user info ends at the first '@' before a '/'; ':' in the host part
		 * is a port, not a password */
		{ "postgresql://h:5432/d@x", "postgresql://h:5432/d@x" },
		{ "postgresql://u:a:b@h", "postgresql://u:***@h" },
		{ "postgresql://", "postgresql://" },
		{ "mysql://root:pw@h/db?password=x", "mysql://root:***@h/db?password=***" },
	};
	char out[256], small[20];

	for (size_t i = 0; i < KG_NITEMS(cases); i++) {
		memset(out, 'X', sizeof(out));
		ck_assert_int_eq(kg_registry_location_redact(cases[i].in, out, sizeof(out)), 0);
		ck_assert_str_eq(out, cases[i].want);
	}
	/* Truncation: -1, terminated, and what is kept is a prefix of the redacted form. */
	ck_assert_int_eq(kg_registry_location_redact("postgresql://kg:s3cret@db/ktlsgate", small,
						     sizeof(small)), -1);
	ck_assert_str_eq(small, "postgresql://kg:***");
	ck_assert_int_eq(kg_registry_location_redact("postgresql://kg:s3cret@db", small, 17), -1);
	ck_assert_str_eq(small, "postgresql://kg:");
	ck_assert_int_eq(kg_registry_location_redact("x", small, 0), -1);

	/* A store's message quoting the URI it was given, once or twice. */
	kg_registry_location_redact_in("registry postgresql://u:pw@h/d: connection to h refused "
				       "(postgresql://u:pw@h/d)", "postgresql://u:pw@h/d", out, sizeof(out));
	ck_assert_str_eq(out, "registry postgresql://u:***@h/d: connection to h refused "
			      "(postgresql://u:***@h/d)");
	kg_registry_location_redact_in("no location here", "postgresql://u:pw@h/d", out, sizeof(out));
	ck_assert_str_eq(out, "no location here");
	kg_registry_location_redact_in("x postgresql://u:pw@h/d", "postgresql://u:pw@h/d", small,
				       sizeof(small));
	ck_assert_str_eq(small, "x postgresql://u:**");

	ck_assert(kg_registry_location_is_uri("postgresql://h"));
	ck_assert(kg_registry_location_is_uri("postgres://h"));
	ck_assert(!kg_registry_location_is_uri("postgresq://h"));
	ck_assert(!kg_registry_location_is_uri("/postgresql://h"));
	ck_assert(kg_registry_location_has_scheme("mysql://h"));
	ck_assert(kg_registry_location_has_scheme("a+b.c-d://"));
	ck_assert(!kg_registry_location_has_scheme("sqlite:/r.db"));
	ck_assert(!kg_registry_location_has_scheme("/a://b"));
	ck_assert(!kg_registry_location_has_scheme("1x://b"));
}
END_TEST

Suite *kg_suite_config(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_test(tc, test_full_round_trip);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_resumption_keys);
	tcase_add_test(tc, test_resumption_psk_ke);
	tcase_add_test(tc, test_listeners);
	tcase_add_test(tc, test_cidr_match);
	tcase_add_test(tc, test_accepted_variants);
	tcase_add_loop_test(tc, test_bad_configs, 0, (int)KG_NITEMS(bad_cases));
	tcase_add_test(tc, test_too_many);
	tcase_add_loop_test(tc, test_sockaddr_parse, 0, (int)KG_NITEMS(addr_cases));
	tcase_add_test(tc, test_load_missing);
	tcase_add_test(tc, test_load_relative_paths);
	tcase_add_test(tc, test_load_path_too_long);
	tcase_add_test(tc, test_example_config);
	tcase_add_test(tc, test_small_errbuf);
	tcase_add_test(tc, test_registry_location);
	tcase_add_test(tc, test_registry_location_redact);
	suite_add_tcase(s, tc);
	return s;
}
