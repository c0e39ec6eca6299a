/* SPDX-License-Identifier: BSD-2-Clause */
/* control_server.h - the daemon's side of the admin socket (protocol: control.h). */
#ifndef KTLSGATE_CONTROL_SERVER_H
#define KTLSGATE_CONTROL_SERVER_H

#include <stddef.h>

#include "daemon.h"

#ifndef KG_VERSION
#define KG_VERSION "0.1.0"
#endif

/* Bind the socket (mode 0600 via umask). Returns the fd or -1 with a message. */
int kg_control_listen(const char *path, char *err, size_t errlen);
/* Serve every pending client on d->control_fd (main thread). */
void kg_control_accept(struct kg_daemon *d);

#endif
