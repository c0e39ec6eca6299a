/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * check_relay_plain.c - the plain sessions' ladder (relay.c, relay_plain.c) without BPF:
 * which relay kg_relay_start() picks for io->dev_plain under each `relay =` value,
 * that a TLS session never gets a plain relay, kg_relay_for_mode() for the new modes,
 * and the user-space copy moving bytes and passing a FIN on in order over socket pairs.
 * The sockmap rung itself needs root and the kernel: make check-sockmap (tests/relay/).
 */
#include <check.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ops/config.h"
#include "ops/metrics.h"
#include "relay/pipe_pool.h"
#include "relay/relay.h"
#include "testlib.h"

struct fixture {
	struct kg_config cfg;
	struct kg_metrics metrics;
	struct kg_pipe_pool pool;
	struct kg_relay_io io;
	bool ktls_unavail;
	int dev_peer, be_peer;     /* the device's and the broker's ends */
};

static void fx_init(struct fixture *f, bool plain, bool pipes, enum kg_relay_choice choice)
{
	int d[2], b[2];

	memset(f, 0, sizeof(*f));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, d), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b), 0);
	f->cfg.relay = choice;
	kg_pipe_pool_init(&f->pool, 4);
	f->ktls_unavail = true;
	f->io.dev = (struct kg_evsrc){ KG_EV_DEVICE, d[0], UINT32_MAX, NULL };
	f->io.be = (struct kg_evsrc){ KG_EV_BACKEND, b[0], UINT32_MAX, NULL };
	f->io.dev_plain = plain;
	f->io.device_id = "unit";
	f->io.cfg = &f->cfg;
	f->io.metrics = &f->metrics;
	f->io.pipes = pipes ? &f->pool : NULL;
	f->io.ktls_unavailable = &f->ktls_unavail;
	f->io.epfd = epoll_create1(0);
	f->dev_peer = d[1];
	f->be_peer = b[1];
}

static void fx_fini(struct fixture *f)
{
	kg_ktls_session_release(&f->io);
	kg_buf_free(&f->io.up);
	kg_buf_free(&f->io.down);
	close(f->io.dev.fd);
	close(f->io.be.fd);
	close(f->dev_peer);
	close(f->be_peer);
	close(f->io.epfd);
	kg_pipe_pool_fini(&f->pool);
}

static const struct {
	bool pipes;
	enum kg_relay_choice choice;
	const char *want;
	enum kg_relay_mode mode;
} ladder[] = {
	{ true, KG_RELAY_AUTO, "splice", KG_MODE_SPLICE },        /* no program: splice */
	{ true, KG_RELAY_KTLS_TX, "splice", KG_MODE_SPLICE },
	{ false, KG_RELAY_AUTO, "plain", KG_MODE_PLAIN },         /* no pipes either */
	{ true, KG_RELAY_USERSPACE, "plain", KG_MODE_PLAIN },     /* forced copy */
	{ true, KG_RELAY_OPENSSL, "plain", KG_MODE_PLAIN },
};

START_TEST(test_plain_ladder)
{
	struct fixture f;
	const struct kg_relay_ops *r;
	bool again = true;

	fx_init(&f, true, ladder[_i].pipes, ladder[_i].choice);
	r = kg_relay_start(&f.io, &again);
	ck_assert_ptr_nonnull(r);
	ck_assert(!again);
	ck_assert_str_eq(r->name, ladder[_i].want);
	ck_assert_int_eq(f.io.mode, ladder[_i].mode);
	ck_assert_ptr_eq(kg_relay_for_mode(f.io.mode), r);
	fx_fini(&f);
}
END_TEST

START_TEST(test_tls_never_plain)
{
	struct fixture f;
	bool again;

	/* a TLS session (no SSL here: nothing TLS can run) must not fall to a plain relay */
	fx_init(&f, false, true, KG_RELAY_AUTO);
	ck_assert_ptr_null(kg_relay_start(&f.io, &again));
	ck_assert(!again);
	fx_fini(&f);
}
END_TEST

START_TEST(test_for_mode)
{
	ck_assert_ptr_eq(kg_relay_for_mode(KG_MODE_SOCKMAP), &kg_relay_sockmap);
	ck_assert_ptr_eq(kg_relay_for_mode(KG_MODE_SPLICE), &kg_relay_splice);
	ck_assert_ptr_eq(kg_relay_for_mode(KG_MODE_PLAIN), &kg_relay_plain);
	ck_assert_str_eq(kg_relay_sockmap.name, "sockmap");
	ck_assert_ptr_eq(kg_relay_for_mode(KG_MODE_USERSPACE_SSL), &kg_relay_userspace);
}
END_TEST

/* io->up first, then the device's later bytes; the device's FIN reaches the broker
 * after them; the broker's answer after that; its close ends the session. */
START_TEST(test_plain_copy_order)
{
	struct fixture f;
	const struct kg_relay_ops *r;
	char buf[64];
	bool again;
	ssize_t n;

	fx_init(&f, true, _i == 1, KG_RELAY_AUTO);
	ck_assert_int_eq(kg_buf_reserve(&f.io.up, 16), 0);
	memcpy(f.io.up.data, "CONNECT", 7);
	f.io.up.len = 7;
	ck_assert_int_eq(send(f.dev_peer, "+more", 5, 0), 5);
	ck_assert_int_eq(shutdown(f.dev_peer, SHUT_WR), 0);
	r = kg_relay_start(&f.io, &again);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(r->pump(&f.io), KG_REASON_OK);
	ck_assert(f.io.dev_eof && f.io.be_shut);
	n = recv(f.be_peer, buf, sizeof(buf), 0);
	ck_assert_int_eq(n, 12);
	ck_assert(memcmp(buf, "CONNECT+more", 12) == 0);
	ck_assert_int_eq(recv(f.be_peer, buf, sizeof(buf), 0), 0);   /* FIN after them */
	ck_assert_int_eq(send(f.be_peer, "CONNACK", 7, 0), 7);
	ck_assert_int_eq(close(f.be_peer), 0);
	f.be_peer = -1;
	ck_assert_int_eq(r->pump(&f.io), KG_REASON_PEER_CLOSED);
	ck_assert_int_eq(recv(f.dev_peer, buf, sizeof(buf), 0), 7);
	ck_assert_uint_eq(f.io.bytes_up, 12);
	ck_assert_uint_eq(f.io.bytes_down, 7);
	fx_fini(&f);
}
END_TEST

Suite *kg_suite_relay_plain(void);   /* tests/unit/run.c */
Suite *kg_suite_relay_plain(void)
{
	Suite *s = suite_create("relay_plain");
	TCase *tc = tcase_create("ladder");

	tcase_add_loop_test(tc, test_plain_ladder, 0, (int)(sizeof(ladder) / sizeof(ladder[0])));
	tcase_add_test(tc, test_tls_never_plain);
	tcase_add_test(tc, test_for_mode);
	tcase_add_loop_test(tc, test_plain_copy_order, 0, 2);   /* plain, splice */
	suite_add_tcase(s, tc);
	return s;
}
