/* SPDX-License-Identifier: BSD-2-Clause */
/* steer.c - load bpf/steer.bpf.c and fill its maps (contract in steer.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "edge/steer.h"
#include "ktlsgate/xdp_gate_maps.h"
#include "steer.skel.h"

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

_Static_assert(sizeof(struct kg_steer_cfg) == 8, "BPF ABI");
_Static_assert(sizeof(struct kg_steer_group_key) == 4, "BPF ABI");

struct kg_steer {
	struct steer_bpf *skel;
	unsigned n_workers;
	uint16_t group_attached;        /* bit per group: program attached */
	_Atomic uint64_t *load;         /* mmapped kg_load, KG_STEER_MAX_WORKERS entries */
	size_t load_len;
};

struct kg_steer *kg_steer_new(enum kg_steer_mode mode, unsigned n_workers, char *why,
			      size_t whylen)
{
	struct kg_steer *s;
	struct kg_steer_cfg cfg = { .n_workers = n_workers };
	uint32_t zero = 0;
	long page = sysconf(_SC_PAGESIZE);
	int err;

	if (n_workers == 0 || n_workers > KG_STEER_MAX_WORKERS) {
		snprintf(why, whylen, "steering supports 1..%d workers, not %u", KG_STEER_MAX_WORKERS,
			 n_workers);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	s->n_workers = n_workers;
	s->skel = steer_bpf__open();
	if (s->skel == NULL) {
		err = errno;
		goto out_err;
	}
	err = -steer_bpf__load(s->skel);
	if (err)
		goto out_err;
	cfg.mode = mode == KG_STEER_LEAST_LOADED ? KG_STEER_BPF_LEAST_LOADED : KG_STEER_BPF_HASH;
	if (bpf_map_update_elem(bpf_map__fd(s->skel->maps.kg_steer), &zero, &cfg, BPF_ANY) < 0) {
		err = errno;
		goto out_err;
	}
	s->load_len = ((KG_STEER_MAX_WORKERS * sizeof(uint64_t)) + (size_t)page - 1) &
		      ~((size_t)page - 1);
	s->load = mmap(NULL, s->load_len, PROT_READ | PROT_WRITE, MAP_SHARED,
		       bpf_map__fd(s->skel->maps.kg_load), 0);
	if (s->load == MAP_FAILED) {
		s->load = NULL;
		err = errno;
		goto out_err;
	}
	return s;
out_err:
	snprintf(why, whylen, "cannot load the steering program: %s", strerror(err));
	kg_steer_free(s);
	return NULL;
}

void kg_steer_free(struct kg_steer *s)
{
	if (s == NULL)
		return;
	if (s->load)
		munmap((void *)s->load, s->load_len);
	steer_bpf__destroy(s->skel);
	free(s);
}

int kg_steer_add(struct kg_steer *s, unsigned group, unsigned worker, int listen_fd, char *why,
		 size_t whylen)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	struct kg_steer_group_key gk = { 0 };
	uint32_t key, g = group;
	uint64_t fd64 = (uint64_t)listen_fd;
	int prog = bpf_program__fd(s->skel->progs.steer_reuseport);

	if (group >= KG_STEER_MAX_GROUPS || worker >= s->n_workers) {
		snprintf(why, whylen, "steering: group %u / worker %u out of range", group, worker);
		return -1;
	}
	if (getsockname(listen_fd, (struct sockaddr *)&ss, &len) < 0)
		goto fail;
	if (ss.ss_family == AF_INET) {
		gk.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		gk.eth_proto = 0x0800;
	} else {
		gk.port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		gk.eth_proto = 0x86DD;
	}
	/* A v4 SYN reaching a dual-stack [::] socket arrives with ETH_P_IP: map both. */
	if (bpf_map_update_elem(bpf_map__fd(s->skel->maps.kg_groups), &gk, &g, BPF_ANY) < 0)
		goto fail;
	if (ss.ss_family == AF_INET6) {
		struct kg_steer_group_key g4 = { .port = gk.port, .eth_proto = 0x0800 };

		(void)bpf_map_update_elem(bpf_map__fd(s->skel->maps.kg_groups), &g4, &g,
					  BPF_NOEXIST);
	}
	key = group * KG_STEER_MAX_WORKERS + worker;
	if (bpf_map_update_elem(bpf_map__fd(s->skel->maps.kg_socks), &key, &fd64, BPF_ANY) < 0)
		goto fail;
	if (!(s->group_attached & (1u << group))) {
		if (setsockopt(listen_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog,
			       sizeof(prog)) < 0)
			goto fail;
		s->group_attached |= (uint16_t)(1u << group);
	}
	return 0;
fail:
	snprintf(why, whylen, "steering: worker %u socket of group %u: %s", worker, group,
		 strerror(errno));
	return -1;
}

void kg_steer_load_add(struct kg_steer *s, unsigned worker, int delta)
{
	if (s == NULL || worker >= s->n_workers)
		return;
	/* Unsigned wrap-around is harmless: a begin always precedes its end. */
	atomic_fetch_add_explicit(&s->load[worker], (uint64_t)(int64_t)delta,
				  memory_order_relaxed);
}
