/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * relay_ktls.c - kernel TLS: attach the ULP before the handshake; after it, the
 * ktls_splice and ktls_tx relays (being written).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "ktlsgate/conn.h"
#include "ktlsgate/daemon.h"
#include "ktlsgate/relay.h"

bool kg_ktls_prepare(struct kg_conn *c)
{
	enum kg_relay_choice r = c->snap->cfg.relay;

	if (r != KG_RELAY_AUTO && r != KG_RELAY_KTLS_TX)
		return false;
	return setsockopt(c->dev.fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) == 0;
}
