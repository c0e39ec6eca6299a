/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * listener.h - a non-blocking SO_REUSEPORT listening socket; each worker opens its
 * own on every listen address so the kernel spreads connections across workers.
 */
#ifndef KTLSGATE_LISTENER_H
#define KTLSGATE_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "ops/config.h"

/* Returns the fd or -1 with a message naming the address. */
int kg_listener_open(const struct kg_sockaddr *addr, char *err, size_t errlen);
/* Is fd a listening socket (SO_ACCEPTCONN)? For sockets another process passed: a
 * handover's, systemd's file descriptor store. */
bool kg_listener_is_listening(int fd);

#endif
