/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * edge.c - load, pin, attach and feed the XDP gate (contract in edge.h).
 *
 * Order: open the skeleton with the pin root (LIBBPF_PIN_BY_NAME maps reuse pins
 * left by a previous run, so the deny list survives a restart) -> load (the
 * verifier runs here; EPERM means no CAP_BPF) -> write config maps (SYN pacing,
 * gated ports, allow-list) -> resolve and attach the configured interfaces through a
 * libnl link cache -> a thread follows RTM_NEWLINK/DELLINK through the cache manager.
 * Attachments are bpf_links: closing the fd (or the process dying) detaches, so a
 * crashed daemon never leaves a stale program on an interface.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_link.h>
#include <linux/magic.h>
#include <netinet/in.h>

#include <bpf/bpf.h>
#include <openssl/evp.h>
#include <bpf/libbpf.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/link.h>

#include "ops/config.h"
#include "edge/edge.h"
#include "edge/edge_block.h"
#include "edge/edge_policy.h"
#include "policy/credential.h"
#include "ops/log.h"
#include "edge/steer.h"
#include "ktlsgate/xdp_gate_maps.h"
#include "xdp_gate.skel.h"

_Static_assert(sizeof(struct kg_xdp_addr) == 16, "BPF ABI");
_Static_assert(sizeof(struct kg_xdp_deny) == 24, "BPF ABI");
_Static_assert(sizeof(struct kg_xdp_lpm_key) == 20, "BPF ABI");
_Static_assert(sizeof(struct kg_xdp_cfg) == 16, "BPF ABI");

struct iface {
	char name[KG_EDGE_IFNAME];
	int ifindex;            /* 0: not present (yet) */
	int link_fd;            /* bpf_link; -1: not attached */
	int adopt_fd;           /* a link the previous process passed (handover); -1 */
	const char *mode;       /* "native" | "generic" | "adopted" */
};

struct kg_edge {
	struct kg_edge_conf conf;
	bool active;
	char why[160];                      /* why inactive (metrics, logs) */

	struct xdp_gate_bpf *skel;          /* NULL when the program is the previous process's */
	/* borrowed from skel, or owned (closed at stop) when the program was kept at a
	 * handover (kg_edge_start_with()) */
	int prog_fd, cfg_fd, ports_fd, deny_fd, allow_fd, stats_fd;
	bool kept_program;

	pthread_mutex_t lock;               /* ifaces[], policy */
	struct iface ifaces[KG_EDGE_MAX_IFACES];
	struct kg_edge_policy *policy;
	_Atomic uint64_t added[KG_XDP_DENY_REASON_MAX];
	_Atomic uint64_t attach_failures;

	struct nl_cache_mngr *mngr;
	struct nl_cache *links;
	pthread_t thread;
	bool thread_started;

	struct kg_steer *steer;             /* NULL: the kernel's reuseport hash */
	bool steer_tried;                   /* load attempted (under lock) */
	int stop_fd;                        /* eventfd: wakes the link thread to exit */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int libbpf_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* Warnings go to our stderr log (the verifier log among them); info/debug not. */
	if (level != LIBBPF_WARN)
		return 0;
	return vfprintf(stderr, fmt, ap);
}

static void inactive(struct kg_edge *e, const char *fmt, const char *detail)
{
	snprintf(e->why, sizeof(e->why), fmt, detail);
	e->active = false;
	kg_log_warnx("edge: running without the XDP gate: %s", e->why);
}

/* mkdir -p for the pin directory; the deepest existing parent must be a bpffs. */
static int pin_dir_ready(const char *dir, char *why, size_t whylen)
{
	char path[sizeof(((struct kg_edge_conf *)0)->pin_dir)];
	struct statfs sfs;
	char *p;

	snprintf(path, sizeof(path), "%s", dir);
	for (p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			goto fail;
		*p = '/';
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		goto fail;
	if (statfs(path, &sfs) < 0)
		goto fail;
	if ((unsigned long)sfs.f_type != (unsigned long)BPF_FS_MAGIC) {
		snprintf(why, whylen, "%s is not on a bpf filesystem", dir);
		return -1;
	}
	return 0;
fail:
	snprintf(why, whylen, "%s: %s", path, strerror(errno));
	return -1;
}

/* Is port one this config gates? */
static bool port_configured(const struct kg_edge *e, uint32_t port)
{
	for (size_t i = 0; i < e->conf.n_ports; i++)
		if (e->conf.ports[i] == port)
			return true;
	return false;
}

/* A kept program's ports array holds the previous config's ports: ungate those this
 * config does not name. One batched read of the whole array (64 Ki one-byte values). */
static int drop_unconfigured_ports(struct kg_edge *e)
{
	uint32_t count = KG_XDP_PORTS_MAX, out_batch = 0;
	uint32_t *keys = calloc(KG_XDP_PORTS_MAX, sizeof(*keys));
	uint8_t *vals = calloc(KG_XDP_PORTS_MAX, 1), zero = 0;
	int rc = -1;

	if (keys == NULL || vals == NULL)
		goto out;
	if (bpf_map_lookup_batch(e->ports_fd, NULL, &out_batch, keys, vals, &count, NULL) < 0 &&
	    errno != ENOENT)   /* ENOENT: the whole array came in this one batch */
		goto out;
	for (uint32_t i = 0; i < count; i++)
		if (vals[i] != 0 && !port_configured(e, keys[i]) &&
		    bpf_map_update_elem(e->ports_fd, &keys[i], &zero, BPF_ANY) < 0)
			goto out;
	rc = 0;
out:
	free(keys);
	free(vals);
	return rc;
}

/* The allow-list is the config's: entries left in the pinned trie by an older config
 * are removed first. */
static int fill_maps(struct kg_edge *e)
{
	struct kg_xdp_cfg xcfg = { 0 };
	struct kg_xdp_lpm_key key, next;
	uint32_t zero = 0;
	uint8_t one = 1;
	int fd;

	if (e->conf.syn_rate) {
		xcfg.syn_interval_ns = 1000000000ull / e->conf.syn_rate;
		xcfg.syn_burst_ns = (uint64_t)(e->conf.syn_burst - 1) * xcfg.syn_interval_ns;
	}
	if (bpf_map_update_elem(e->cfg_fd, &zero, &xcfg, BPF_ANY) < 0)
		return -1;
	fd = e->ports_fd;
	for (size_t i = 0; i < e->conf.n_ports; i++) {
		uint32_t port = e->conf.ports[i];

		if (bpf_map_update_elem(fd, &port, &one, BPF_ANY) < 0)
			return -1;
	}
	if (e->kept_program && drop_unconfigured_ports(e) < 0)
		return -1;
	while (bpf_map_get_next_key(e->allow_fd, NULL, &next) == 0) {
		key = next;
		if (bpf_map_delete_elem(e->allow_fd, &key) < 0)
			return -1;
	}
	for (size_t i = 0; i < e->conf.n_allow; i++) {
		memset(&key, 0, sizeof(key));
		key.prefixlen = e->conf.allow[i].prefix;
		memcpy(key.addr.a, e->conf.allow[i].addr, 16);
		if (bpf_map_update_elem(e->allow_fd, &key, &one, BPF_ANY) < 0)
			return -1;
	}
	return 0;
}

/* Attach to ifindex: native first, generic if the driver has no XDP (xdp_mode = auto),
 * or only the configured mode. Lock held. */
static void attach(struct kg_edge *e, struct iface *ifc, int ifindex)
{
	struct bpf_link_create_opts opts = { .sz = sizeof(opts) };
	int prog = e->prog_fd;
	int fd = -1, native_err = 0;

	if (ifc->link_fd >= 0) {
		close(ifc->link_fd);   /* a stale link on a vanished ifindex */
		ifc->link_fd = -1;
	}
	ifc->ifindex = ifindex;
	ifc->mode = NULL;
	/* A handover (core/handover.h): the previous process's link stays attached and
	 * gets this program in its place, one atomic swap: no packet meets an interface
	 * without the gate, and the pinned maps are the same. */
	if (ifc->adopt_fd >= 0) {
		fd = ifc->adopt_fd;
		ifc->adopt_fd = -1;
		/* a kept program: the link already runs it */
		if (e->kept_program || bpf_link_update(fd, prog, NULL) == 0) {
			ifc->mode = "adopted";
			ifc->link_fd = fd;
			kg_log_info("edge: XDP gate on %s (ifindex %d) taken over from the previous "
				    "process: %s", ifc->name, ifindex, e->kept_program ?
				    "its program kept" : "program replaced in place");
			return;
		}
		kg_log_warn("edge: cannot replace the program of the passed XDP link on %s",
			    ifc->name);
		close(fd);
		fd = -1;
	}
	if (e->conf.mode != KG_EDGE_MODE_GENERIC) {
		opts.flags = XDP_FLAGS_DRV_MODE;
		fd = bpf_link_create(prog, ifindex, BPF_XDP, &opts);
		native_err = fd < 0 ? errno : 0;
		if (fd >= 0) {
			ifc->mode = "native";
			kg_log_info("edge: XDP gate attached to %s (ifindex %d) in native mode",
				    ifc->name, ifindex);
		}
	}
	if (fd < 0 && e->conf.mode != KG_EDGE_MODE_NATIVE) {
		opts.flags = XDP_FLAGS_SKB_MODE;
		fd = bpf_link_create(prog, ifindex, BPF_XDP, &opts);
		if (fd >= 0) {
			ifc->mode = "generic";
			kg_log_info("edge: XDP gate attached to %s (ifindex %d) in generic mode (%s)",
				    ifc->name, ifindex,
				    native_err ? strerror(native_err) : "xdp_mode = generic");
		}
	}
	if (fd < 0) {
		kg_log_warn("edge: cannot attach the XDP gate to %s (ifindex %d%s%s)", ifc->name,
			    ifindex, native_err ? "; native: " : "",
			    native_err ? strerror(native_err) : "");
		atomic_fetch_add(&e->attach_failures, 1);
		return;
	}
	ifc->link_fd = fd;
}

static struct iface *iface_by_name(struct kg_edge *e, const char *name)
{
	for (size_t i = 0; i < e->conf.n_ifaces; i++)
		if (strcmp(e->ifaces[i].name, name) == 0)
			return &e->ifaces[i];
	return NULL;
}

/* libnl cache manager callback (link thread): attach to a configured interface that
 * appeared or came back with a new ifindex; forget one that went away. */
static void link_changed(struct nl_cache *cache, struct nl_object *obj, int action, void *arg)
{
	struct kg_edge *e = arg;
	struct rtnl_link *link = (struct rtnl_link *)obj;
	const char *name = rtnl_link_get_name(link);
	int ifindex = rtnl_link_get_ifindex(link);
	struct iface *ifc;

	(void)cache;
	if (name == NULL)
		return;
	pthread_mutex_lock(&e->lock);
	ifc = iface_by_name(e, name);
	if (action == NL_ACT_DEL) {
		for (size_t i = 0; i < e->conf.n_ifaces; i++) {
			struct iface *x = &e->ifaces[i];

			if (x->ifindex == ifindex && x->link_fd >= 0) {
				kg_log_info("edge: %s (ifindex %d) went away", x->name, ifindex);
				close(x->link_fd);
				x->link_fd = -1;
				x->ifindex = 0;
				x->mode = NULL;
			}
		}
	} else if (ifc && (ifc->link_fd < 0 || ifc->ifindex != ifindex)) {
		attach(e, ifc, ifindex);
	}
	pthread_mutex_unlock(&e->lock);
}

static void *link_thread(void *arg)
{
	struct kg_edge *e = arg;
	struct pollfd pfd[2] = {
		{ .fd = nl_cache_mngr_get_fd(e->mngr), .events = POLLIN },
		{ .fd = e->stop_fd, .events = POLLIN },
	};

	for (;;) {
		int n = poll(pfd, 2, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || (pfd[1].revents & POLLIN))
			break;
		if (pfd[0].revents & (POLLIN | POLLERR))
			(void)nl_cache_mngr_data_ready(e->mngr);
	}
	return NULL;
}

static int links_start(struct kg_edge *e)
{
	int rc;

	rc = nl_cache_mngr_alloc(NULL, NETLINK_ROUTE, NL_AUTO_PROVIDE, &e->mngr);
	if (rc < 0)
		goto fail;
	rc = nl_cache_mngr_add(e->mngr, "route/link", link_changed, e, &e->links);
	if (rc < 0)
		goto fail;
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->conf.n_ifaces; i++) {
		struct iface *ifc = &e->ifaces[i];
		int ifindex = rtnl_link_name2i(e->links, ifc->name);

		if (ifindex > 0)
			attach(e, ifc, ifindex);
		else
			kg_log_info("edge: interface %s not present: attached when it appears",
				    ifc->name);
	}
	pthread_mutex_unlock(&e->lock);
	e->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (e->stop_fd < 0) {
		kg_log_warn("edge: eventfd: link events not followed");
		return 0;
	}
	if (pthread_create(&e->thread, NULL, link_thread, e) != 0) {
		kg_log_warnx("edge: cannot start the link thread: link events not followed");
		return 0;
	}
	e->thread_started = true;
	return 0;
fail:
	kg_log_warnx("edge: libnl: %s", nl_geterror(rc));
	return -1;
}

static int policy_start(struct kg_edge *e)
{
	struct kg_edge_policy_params pp = {
		.threshold = e->conf.fail_threshold,
		.window_ms = (uint64_t)e->conf.fail_window_s * 1000,
		.base_ms = (uint64_t)e->conf.deny_base_s * 1000,
		.max_ms = (uint64_t)e->conf.deny_max_s * 1000,
		.capacity = e->conf.track_sources,
		.seed = mono_ns() ^ ((uint64_t)getpid() << 32),
	};

	e->policy = kg_edge_policy_new(&pp);
	return e->policy ? 0 : -1;
}

/* A pin whose map no longer matches this build's definition (type, key, value, size:
 * an upgrade changed the layout) cannot be reused: remove it, say so. A matching pin is
 * kept, so the deny list and counters survive restarts. */
static void drop_stale_pins(struct xdp_gate_bpf *skel, const char *pin_root)
{
	const struct bpf_map *maps[] = { skel->maps.kg_deny, skel->maps.kg_allow,
					 skel->maps.kg_stats };

	for (size_t i = 0; i < KG_NITEMS(maps); i++) {
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);
		char p[512];
		int fd;

		snprintf(p, sizeof(p), "%s/%s", pin_root, bpf_map__name(maps[i]));
		fd = bpf_obj_get(p);
		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
		    info.type == (__u32)bpf_map__type(maps[i]) &&
		    info.key_size == bpf_map__key_size(maps[i]) &&
		    info.value_size == bpf_map__value_size(maps[i]) &&
		    info.max_entries == bpf_map__max_entries(maps[i])) {
			close(fd);
			continue;
		}
		close(fd);
		kg_log_warnx("edge: pinned map %s has an older layout: replaced (its entries are lost)",
			     p);
		(void)unlink(p);
	}
}

static struct xdp_gate_bpf *load_skel(const char *pin_root, bool pinning, int *err)
{
	struct bpf_object_open_opts oo = { .sz = sizeof(oo), .pin_root_path = pin_root };
	struct xdp_gate_bpf *skel = xdp_gate_bpf__open_opts(&oo);

	if (skel == NULL) {
		*err = errno;
		return NULL;
	}
	if (pinning) {
		drop_stale_pins(skel, pin_root);
	} else {
		(void)bpf_map__set_pin_path(skel->maps.kg_deny, NULL);
		(void)bpf_map__set_pin_path(skel->maps.kg_allow, NULL);
		(void)bpf_map__set_pin_path(skel->maps.kg_stats, NULL);
	}
	*err = -xdp_gate_bpf__load(skel);
	if (*err == 0)
		return skel;
	xdp_gate_bpf__destroy(skel);
	return NULL;
}

struct kg_edge *kg_edge_start(const struct kg_config *cfg)
{
	return kg_edge_start_with(cfg, NULL);
}

/* This build's program id: the SHA-256 of the BPF object the skeleton embeds, in hex.
 * Two builds with the same id run the same instructions on the same map layouts. */
static void build_id(char out[KG_EDGE_BUILD_ID_LEN])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t sz = 0;
	const void *obj = xdp_gate_bpf__elf_bytes(&sz);

	out[0] = '\0';
	if (EVP_Digest(obj, sz, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		return;
	kg_hex_lower(md, mdlen, out);
}

/* Keep the previous process's program and maps (kg_edge_start_with()): all of them,
 * from a process that ran this build's program, or none. Returns 0, or -1 with why. */
static int keep_program(struct kg_edge *e, const struct kg_edge_passed *p, char *why,
			size_t whylen)
{
	char mine[KG_EDGE_BUILD_ID_LEN], theirs[KG_EDGE_BUILD_ID_LEN];
	int fds[KG_EDGE_OBJ_MAX];
	int missing = 0, other = 0;

	build_id(mine);
	for (int i = 0; i < KG_EDGE_OBJ_MAX; i++) {
		theirs[0] = '\0';
		fds[i] = p && p->take_obj ? p->take_obj(p->arg, (enum kg_edge_obj)i, theirs) : -1;
		missing += fds[i] < 0;
		other += fds[i] >= 0 && (mine[0] == '\0' || strcmp(theirs, mine) != 0);
	}
	if (missing || other) {
		snprintf(why, whylen, "%s", missing ? "the previous process passed no program" :
			 "the previous process runs another build of the gate's program");
		for (int i = 0; i < KG_EDGE_OBJ_MAX; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return -1;
	}
	e->prog_fd = fds[KG_EDGE_OBJ_PROG];
	e->cfg_fd = fds[KG_EDGE_OBJ_CFG];
	e->ports_fd = fds[KG_EDGE_OBJ_PORTS];
	e->deny_fd = fds[KG_EDGE_OBJ_DENY];
	e->allow_fd = fds[KG_EDGE_OBJ_ALLOW];
	e->stats_fd = fds[KG_EDGE_OBJ_STATS];
	e->kept_program = true;
	return 0;
}

static void close_kept(struct kg_edge *e)
{
	int *fds[] = { &e->prog_fd, &e->cfg_fd, &e->ports_fd, &e->deny_fd, &e->allow_fd,
		       &e->stats_fd };

	if (!e->kept_program)
		return;
	for (size_t i = 0; i < KG_NITEMS(fds); i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
	e->kept_program = false;
}

/* Passed links no interface took (the gate is off here, or the link went away). */
static void drop_adopted(struct kg_edge *e)
{
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < KG_EDGE_MAX_IFACES; i++)
		if (e->ifaces[i].adopt_fd >= 0) {
			close(e->ifaces[i].adopt_fd);
			e->ifaces[i].adopt_fd = -1;
		}
	pthread_mutex_unlock(&e->lock);
}

static struct kg_edge *start(struct kg_edge *e, const struct kg_edge_passed *p);

struct kg_edge *kg_edge_start_with(const struct kg_config *cfg, const struct kg_edge_passed *p)
{
	struct kg_edge *e = calloc(1, sizeof(*e));
	struct kg_edge *r;

	if (e == NULL)
		return NULL;
	e->conf = cfg->edge;
	e->stop_fd = -1;
	e->prog_fd = e->cfg_fd = e->ports_fd = e->deny_fd = e->allow_fd = e->stats_fd = -1;
	pthread_mutex_init(&e->lock, NULL);
	for (size_t i = 0; i < KG_EDGE_MAX_IFACES; i++) {
		e->ifaces[i].link_fd = -1;
		e->ifaces[i].adopt_fd = -1;
		if (i < e->conf.n_ifaces) {
			snprintf(e->ifaces[i].name, sizeof(e->ifaces[i].name), "%s",
				 e->conf.ifaces[i]);
			if (p != NULL && p->take_link != NULL)
				e->ifaces[i].adopt_fd = p->take_link(p->arg, e->ifaces[i].name);
		}
	}
	r = start(e, p);
	if (r != NULL)
		drop_adopted(r);
	/* objects the start did not keep: closed */
	for (int i = 0; p != NULL && p->take_obj != NULL && i < KG_EDGE_OBJ_MAX; i++) {
		char id[KG_EDGE_BUILD_ID_LEN];
		int fd = p->take_obj(p->arg, (enum kg_edge_obj)i, id);

		if (fd >= 0)
			close(fd);
	}
	return r;
}

static struct kg_edge *start(struct kg_edge *e, const struct kg_edge_passed *p)
{
	char why[512], kwhy[96];
	bool pinning = true;
	int err;

	if (!e->conf.xdp) {
		inactive(e, "%s", "[edge] xdp = off");
		return e;
	}
	if (e->conf.n_ifaces == 0) {
		snprintf(e->why, sizeof(e->why), "no [edge] interfaces configured");
		kg_log_info("edge: XDP gate off: %s", e->why);
		return e;
	}
	libbpf_set_print(libbpf_quiet);
	if (pin_dir_ready(e->conf.pin_dir, why, sizeof(why)) < 0) {
		/* The gate still works; only `ktlsgate block` cannot reach it. */
		kg_log_warnx("edge: maps not pinned (%s): `ktlsgate block` will not see them", why);
		pinning = false;
	}
	e->skel = load_skel(e->conf.pin_dir, pinning, &err);
	if (e->skel != NULL) {
		e->prog_fd = bpf_program__fd(e->skel->progs.gate_xdp);
		e->cfg_fd = bpf_map__fd(e->skel->maps.kg_cfg);
		e->ports_fd = bpf_map__fd(e->skel->maps.kg_ports);
		e->deny_fd = bpf_map__fd(e->skel->maps.kg_deny);
		e->allow_fd = bpf_map__fd(e->skel->maps.kg_allow);
		e->stats_fd = bpf_map__fd(e->skel->maps.kg_stats);
	} else if (!(err == EPERM || err == EACCES) || p == NULL) {
		inactive(e, err == EPERM || err == EACCES ?
			 "cannot load BPF (%s: no CAP_BPF/CAP_NET_ADMIN?)" : "cannot load BPF: %s",
			 strerror(err));
		return e;
	} else if (keep_program(e, p, kwhy, sizeof(kwhy)) == 0) {
		kg_log_info("edge: cannot load BPF here (%s); keeping the gate's program the previous "
			    "process ran (the same build) with its maps", strerror(err));
	} else {
		kg_log_warnx("edge: cannot load BPF here: %s", strerror(err));
		inactive(e, "cannot load BPF here, and %s", kwhy);
		return e;
	}
	if (fill_maps(e) < 0) {
		inactive(e, "cannot fill the gate's maps: %s", strerror(errno));
		goto out_destroy;
	}
	if (policy_start(e) < 0) {
		inactive(e, "%s", "out of memory for the deny policy");
		goto out_destroy;
	}
	e->active = true;
	if (links_start(e) < 0) {
		inactive(e, "%s", "cannot read the interfaces (libnl)");
		goto out_links;
	}
	kg_log_info("edge: XDP gate loaded (%zu port(s), %zu allow CIDR(s), SYN %u/s burst %u, "
		    "deny after %u failures in %us for %us..%us)%s%s", e->conf.n_ports,
		    e->conf.n_allow, e->conf.syn_rate, e->conf.syn_burst, e->conf.fail_threshold,
		    e->conf.fail_window_s, e->conf.deny_base_s, e->conf.deny_max_s,
		    pinning ? ", maps pinned in " : "", pinning ? e->conf.pin_dir : "");
	return e;

out_links:
	for (size_t i = 0; i < e->conf.n_ifaces; i++)
		if (e->ifaces[i].link_fd >= 0)
			close(e->ifaces[i].link_fd);
	if (e->mngr)
		nl_cache_mngr_free(e->mngr);
	e->mngr = NULL;
out_destroy:
	kg_edge_policy_free(e->policy);
	e->policy = NULL;
	xdp_gate_bpf__destroy(e->skel);
	e->skel = NULL;
	close_kept(e);
	return e;
}

size_t kg_edge_link_fds(struct kg_edge *e, int *fds, char (*names)[KG_EDGE_IFNAME], size_t max)
{
	size_t n = 0;

	if (e == NULL)
		return 0;
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->conf.n_ifaces && n < max; i++)
		if (e->ifaces[i].link_fd >= 0) {
			fds[n] = e->ifaces[i].link_fd;
			memcpy(names[n], e->ifaces[i].name, KG_EDGE_IFNAME);
			n++;
		}
	pthread_mutex_unlock(&e->lock);
	return n;
}

int kg_edge_gate_fds(struct kg_edge *e, int fds[KG_EDGE_OBJ_MAX],
		     char id[KG_EDGE_BUILD_ID_LEN])
{
	if (!kg_edge_active(e) || e->prog_fd < 0)
		return -1;
	fds[KG_EDGE_OBJ_PROG] = e->prog_fd;
	fds[KG_EDGE_OBJ_CFG] = e->cfg_fd;
	fds[KG_EDGE_OBJ_PORTS] = e->ports_fd;
	fds[KG_EDGE_OBJ_DENY] = e->deny_fd;
	fds[KG_EDGE_OBJ_ALLOW] = e->allow_fd;
	fds[KG_EDGE_OBJ_STATS] = e->stats_fd;
	build_id(id);
	return id[0] ? 0 : -1;
}

void kg_edge_stop(struct kg_edge *e)
{
	if (e == NULL)
		return;
	if (e->thread_started) {
		uint64_t one = 1;

		(void)!write(e->stop_fd, &one, sizeof(one));
		pthread_join(e->thread, NULL);
	}
	if (e->stop_fd >= 0)
		close(e->stop_fd);
	for (size_t i = 0; i < e->conf.n_ifaces; i++) {
		if (e->ifaces[i].link_fd >= 0) {
			close(e->ifaces[i].link_fd);
			kg_log_info("edge: XDP gate detached from %s", e->ifaces[i].name);
		}
	}
	if (e->mngr)
		nl_cache_mngr_free(e->mngr);
	kg_steer_free(e->steer);
	kg_edge_policy_free(e->policy);
	xdp_gate_bpf__destroy(e->skel);
	close_kept(e);
	pthread_mutex_destroy(&e->lock);
	free(e);
}

bool kg_edge_active(const struct kg_edge *e)
{
	return e && e->active;
}

static int sockaddr_key(const struct sockaddr *sa, socklen_t len, struct kg_xdp_addr *k)
{
	memset(k, 0, sizeof(*k));
	if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		k->a[10] = k->a[11] = 0xff;
		memcpy(&k->a[12], &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		memcpy(k->a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return 0;
	}
	return -1;
}

void kg_edge_note_refusal(struct kg_edge *e, const struct sockaddr *src, socklen_t len,
			  int reason)
{
	struct kg_xdp_lpm_key lk = { .prefixlen = 128 };
	struct kg_xdp_deny v = { 0 };
	int cat = kg_edge_reason_category(reason);
	uint8_t allowed;
	uint64_t now, period;
	unsigned strikes = 0;
	char text[64];

	if (!kg_edge_active(e) || cat < 0 || src == NULL || sockaddr_key(src, len, &lk.addr) < 0)
		return;
	if (bpf_map_lookup_elem(e->allow_fd, &lk, &allowed) == 0)
		return; /* allow-listed: never denied, so not counted either */
	now = mono_ns();
	pthread_mutex_lock(&e->lock);
	period = kg_edge_policy_note(e->policy, lk.addr.a, now / 1000000, &strikes);
	pthread_mutex_unlock(&e->lock);
	if (period == 0)
		return;
	v.added_ns = now;
	v.expires_ns = now + period * 1000000ull;
	v.reason = (uint32_t)cat;
	v.strikes = strikes;
	if (bpf_map_update_elem(e->deny_fd, &lk.addr, &v, BPF_ANY) < 0) {
		kg_log_warn("edge: deny map update");
		return;
	}
	atomic_fetch_add(&e->added[cat], 1);
	kg_log_info("edge: denying %s at XDP for %llus (%s failures, strike %u)",
		    kg_edge_addr_str(lk.addr.a, text, sizeof(text)),
		    (unsigned long long)(period / 1000), kg_edge_block_reason_name((uint32_t)cat),
		    strikes);
}

int kg_edge_steer_listener(struct kg_edge *e, unsigned n_workers, unsigned group,
			   unsigned worker, int fd)
{
	char why[256];
	int rc = 0;

	if (e == NULL || e->conf.steer == KG_EDGE_STEER_KERNEL)
		return 0;
	pthread_mutex_lock(&e->lock);
	if (!e->steer_tried) {
		e->steer_tried = true;
		e->steer = kg_steer_new(e->conf.steer == KG_EDGE_STEER_LEAST_LOADED ?
					KG_STEER_LEAST_LOADED : KG_STEER_HASH, n_workers, why,
					sizeof(why));
		if (e->steer)
			kg_log_info("edge: new connections steered to workers by %s (SK_REUSEPORT)",
				    e->conf.steer == KG_EDGE_STEER_LEAST_LOADED ?
				    "fewest handshakes in flight" : "flow hash");
		else
			kg_log_warnx("edge: worker steering off, the kernel's hash spreads "
				     "connections: %s", why);
	}
	if (e->steer) {
		rc = kg_steer_add(e->steer, group, worker, fd, why, sizeof(why)) < 0 ? -1 : 1;
		if (rc < 0)
			kg_log_warnx("edge: %s", why);
	}
	pthread_mutex_unlock(&e->lock);
	return rc;
}

void kg_edge_handshake(struct kg_edge *e, unsigned worker, int delta)
{
	/* e->steer is written once at start, before the workers run. */
	if (e && e->steer)
		kg_steer_load_add(e->steer, worker, delta);
}

/* ---- `ktlsgate block` through the daemon --------------------------------------- */

static int gate_needed(const struct kg_edge *e, char *why, size_t whylen)
{
	if (kg_edge_active(e))
		return 0;
	snprintf(why, whylen, "the XDP gate is not active: %s",
		 e == NULL ? "no [edge] section" : e->why[0] ? e->why : "not started");
	return -ENODEV;
}

static int map_error(int rc, const char *what, char *why, size_t whylen)
{
	if (rc < 0)
		snprintf(why, whylen, "%s: %s", what, strerror(-rc));
	return rc;
}

int kg_edge_gate_block(struct kg_edge *e, const uint8_t addr[16], uint64_t secs,
		       bool *allow_listed, char *why, size_t whylen)
{
	char text[64];
	int rc;

	*allow_listed = false;
	if ((rc = gate_needed(e, why, whylen)) < 0)
		return rc;
	rc = kg_edge_block_add(e->deny_fd, addr, secs);
	if (rc < 0)
		return map_error(rc, "deny map update", why, whylen);
	*allow_listed = kg_edge_block_allowed(e->allow_fd, addr);
	/* The pins' path leaves no trace in the daemon; this one is the daemon's own act. */
	if (secs)
		kg_log_info("edge: %s denied at XDP for %llus (ktlsgate block add)",
			    kg_edge_addr_str(addr, text, sizeof(text)), (unsigned long long)secs);
	else
		kg_log_info("edge: %s denied at XDP until removed (ktlsgate block add)",
			    kg_edge_addr_str(addr, text, sizeof(text)));
	return 0;
}

int kg_edge_gate_unblock(struct kg_edge *e, const uint8_t addr[16], char *why, size_t whylen)
{
	char text[64];
	int rc;

	if ((rc = gate_needed(e, why, whylen)) < 0)
		return rc;
	rc = kg_edge_block_remove(e->deny_fd, addr);
	if (rc == -ENOENT) {
		snprintf(why, whylen, "%s is not blocked", kg_edge_addr_str(addr, text, sizeof(text)));
		return rc;
	}
	if (rc < 0)
		return map_error(rc, "deny map delete", why, whylen);
	kg_log_info("edge: %s no longer denied at XDP (ktlsgate block remove)",
		    kg_edge_addr_str(addr, text, sizeof(text)));
	return 0;
}

int kg_edge_gate_list(struct kg_edge *e,
		      int (*cb)(const struct kg_edge_block_entry *en, void *arg), void *arg,
		      char *why, size_t whylen)
{
	int rc;

	if ((rc = gate_needed(e, why, whylen)) < 0)
		return rc;
	return kg_edge_block_each(e->deny_fd, cb, arg);
}

int kg_edge_gate_verdicts(struct kg_edge *e, uint64_t sum[KG_XDP_STAT_MAX], char *why,
			  size_t whylen)
{
	int rc;

	if ((rc = gate_needed(e, why, whylen)) < 0)
		return rc;
	return map_error(kg_edge_block_stats(e->stats_fd, sum), "stats map", why, whylen);
}

int kg_edge_gate_map_ids(struct kg_edge *e, uint32_t ids[3], char *why, size_t whylen)
{
	int fds[3], rc;

	if ((rc = gate_needed(e, why, whylen)) < 0)
		return rc;
	fds[0] = e->deny_fd;
	fds[1] = e->allow_fd;
	fds[2] = e->stats_fd;
	for (int i = 0; i < 3; i++) {
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);

		if (bpf_obj_get_info_by_fd(fds[i], &info, &len) < 0)
			return map_error(-errno, "map info", why, whylen);
		ids[i] = info.id;
	}
	return 0;
}

/* ---- metrics -------------------------------------------------------------------- */

static int count_entry(const struct kg_edge_block_entry *en, void *arg)
{
	(void)en;
	(*(uint64_t *)arg)++;
	return 0;
}

/* Live (unexpired) entries of the deny map: what `ktlsgate block list` shows. */
static uint64_t deny_entries(struct kg_edge *e)
{
	uint64_t n = 0;

	(void)kg_edge_block_each(e->deny_fd, count_entry, &n);
	return n;
}

int kg_edge_metrics_write(struct kg_edge *e, FILE *f)
{
	uint64_t sum[KG_XDP_STAT_MAX] = { 0 };
	bool active = kg_edge_active(e);

	fprintf(f, "# HELP ktlsgate_xdp_gate_active 1 when the XDP gate is loaded\n"
		   "# TYPE ktlsgate_xdp_gate_active gauge\n"
		   "ktlsgate_xdp_gate_active %d\n", active ? 1 : 0);
	if (!active)
		return ferror(f) ? -1 : 0;
	fprintf(f, "# HELP ktlsgate_xdp_packets_total Packets seen by the XDP gate, by verdict\n"
		   "# TYPE ktlsgate_xdp_packets_total counter\n");
	(void)kg_edge_block_stats(e->stats_fd, sum);   /* a failed read shows 0 */
	for (uint32_t k = 0; k < KG_XDP_STAT_MAX; k++)
		fprintf(f, "ktlsgate_xdp_packets_total{verdict=\"%s\"} %llu\n",
			kg_edge_block_stat_name(k), (unsigned long long)sum[k]);
	fprintf(f, "# HELP ktlsgate_xdp_deny_entries Sources currently denied at XDP\n"
		   "# TYPE ktlsgate_xdp_deny_entries gauge\n"
		   "ktlsgate_xdp_deny_entries %llu\n", (unsigned long long)deny_entries(e));
	fprintf(f, "# HELP ktlsgate_xdp_deny_added_total Deny entries added by the daemon, by reason\n"
		   "# TYPE ktlsgate_xdp_deny_added_total counter\n");
	for (int r = KG_XDP_DENY_VERIFY; r < KG_XDP_DENY_REASON_MAX; r++)
		fprintf(f, "ktlsgate_xdp_deny_added_total{reason=\"%s\"} %llu\n",
			kg_edge_block_reason_name((uint32_t)r),
			(unsigned long long)atomic_load(&e->added[r]));
	fprintf(f, "# HELP ktlsgate_xdp_attached Interfaces the gate is attached to, by mode\n"
		   "# TYPE ktlsgate_xdp_attached gauge\n");
	pthread_mutex_lock(&e->lock);
	for (size_t i = 0; i < e->conf.n_ifaces; i++)
		fprintf(f, "ktlsgate_xdp_attached{interface=\"%s\",mode=\"%s\"} %d\n",
			e->ifaces[i].name, e->ifaces[i].mode ? e->ifaces[i].mode : "none",
			e->ifaces[i].link_fd >= 0 ? 1 : 0);
	fprintf(f, "# HELP ktlsgate_edge_sources_tracked Sources with recent refusals\n"
		   "# TYPE ktlsgate_edge_sources_tracked gauge\n"
		   "ktlsgate_edge_sources_tracked %zu\n", kg_edge_policy_count(e->policy));
	pthread_mutex_unlock(&e->lock);
	return ferror(f) ? -1 : 0;
}
