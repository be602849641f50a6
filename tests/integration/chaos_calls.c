/*
 * One chaos thread's actions on the daemon's nodes: opens and closes of every node kind, dups,
 * ioctls with the real command numbers and arguments that are valid, mutated (argsz/size, flags,
 * ids, iovas, lengths, pointers) or random, other processes' kinds of fds passed as fd arguments,
 * reads/writes/mmaps, valid sequences (a container with a group and mappings, a bound cdev with an
 * IOAS, the iommufd VFIO compatibility path, a group-path device), and forks whose children use or
 * close what they inherited.
 *
 * Everything the daemon may write back goes into the thread's arena (chaos.h), fenced by guard
 * pages, so a wrong reply can fail a call but never corrupt this process. A forked child only
 * makes system calls and writes to memory it owns: no malloc, no stdio (another thread may have
 * held their locks at the fork).
 *
 * fd-passing ioctls (SET_CONTAINER, BIND_IOMMUFD, USE_GROUP, MAP_FILE, SET_IRQS/FEATURE with
 * eventfds, and the numbers that could be them) are issued only by threads with may_pass_fds:
 * the daemon resolves each with a round trip into its own mount, and 64 of them at once deadlock
 * it (a known bug, being fixed separately; chaos --fd-passing-threads raises the number).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chaos.h"
#include "vfio_emu_compat.h"

#define PAGE 4096ULL
#define MIB (1ULL << 20)
#define GIB (1ULL << 30)

/* ---- randomness --------------------------------------------------------------------------- */

static uint64_t rnd(struct chaos_thread *t)
{
	/* xorshift64* */
	t->rng ^= t->rng >> 12;
	t->rng ^= t->rng << 25;
	t->rng ^= t->rng >> 27;
	return t->rng * 0x2545f4914f6cdd1dULL;
}

static uint64_t below(struct chaos_thread *t, uint64_t n)
{
	return n == 0 ? 0 : rnd(t) % n;
}

static int chance(struct chaos_thread *t, unsigned percent)
{
	return below(t, 100) < percent;
}

/* Boundary values for any integer field. */
static uint64_t interesting(struct chaos_thread *t, uint64_t valid)
{
	static const uint64_t values[] = {
		0, 1, 2, 3, 4, 7, 8, 0x10, 0x7f, 0x80, 0xff, 0xfff, 0x1000, 0x1001, 0xffff, 0x10000,
		0x1fffff, 0x200000, 0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ULL,
		0x7fffffffffffffffULL, 0x8000000000000000ULL, UINT64_MAX, UINT64_MAX - 0xfff,
		1ULL << 48, 1ULL << 59,
	};
	switch (below(t, 6)) {
	case 0:
	case 1:
		return values[below(t, sizeof(values) / sizeof(values[0]))];
	case 2:
		return valid + 1;
	case 3:
		return valid - 1;
	case 4:
		return valid ^ (1ULL << below(t, 64));
	default:
		return rnd(t);
	}
}

/* ---- counting and reporting ------------------------------------------------------------------ */

static void add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

static void count_errno(uint64_t *histogram, int e)
{
	add(&histogram[e >= 0 && e < CHAOS_ERRNOS ? e : CHAOS_ERRNOS - 1], 1);
}

static void begin(struct chaos_thread *t, int activity, enum chaos_kind kind, int node,
		  unsigned long request)
{
	struct chaos_counts *c = t->counts;
	c->cur_activity = activity;
	c->cur_kind = kind;
	c->cur_node = node;
	c->cur_request = (uint32_t)request;
	__atomic_store_n(&c->cur_since_ns, chaos_now_ns(), __ATOMIC_RELEASE);
}

static void end(struct chaos_thread *t)
{
	__atomic_store_n(&t->counts->cur_since_ns, 0, __ATOMIC_RELEASE);
	t->counts->cur_activity = ACT_IDLE;
}

static const char *node_name(const struct chaos_thread *t, int node)
{
	return node >= 0 && node < t->cfg->nnodes ? t->cfg->nodes[node].name : "(not a node)";
}

/* An errno no call of ours should ever see: the daemon died (ENOTCONN), FUSE refused the reply
 * (EIO, EPROTO), or an errno no handler returns. `passes_fd`: EAGAIN is documented for calls
 * whose fd arguments queue up beyond the daemon's limit (README, fd arguments). */
static int unexpected_errno(int e, enum chaos_kind kind, int passes_fd)
{
	if (e == EAGAIN)
		return !passes_fd;
	switch (e) {
	case 0:
	case EPERM:
	case ENOENT:
	case ENXIO:
	case E2BIG:
	case EBADF:
	case ENOMEM:
	case EACCES:
	case EFAULT:
	case EBUSY:
	case EEXIST:
	case ENODEV:
	case EINVAL:
	case ENOSPC:
	case ESPIPE:
	case ERANGE:
	case ENOTTY:
	case EOVERFLOW:
	case EMSGSIZE:
	case EOPNOTSUPP:
	case EBADFD:
	case EADDRINUSE: /* iommufd: allowed IOVAs over reserved ones (iopt_set_allow_iova) */
		return 0;
	case EIO: /* a device with fail_reset after its RESET; nothing else gives EIO */
		return kind != KIND_DEVICE;
	default:
		return 1;
	}
}

static void hex_bytes(char *out, size_t cap, const uint8_t *p, size_t n)
{
	size_t at = 0;
	for (size_t i = 0; i < n && at + 3 < cap; i++)
		at += (size_t)snprintf(out + at, cap - at, "%02x", p[i]);
	if (at < cap)
		out[at] = '\0';
}

/* ---- the arena and other memory ------------------------------------------------------------ */

/* An address that is certainly not accessible for writing (most not for reading either). */
static uint64_t bad_address(struct chaos_thread *t)
{
	switch (below(t, 7)) {
	case 0:
		return 0;
	case 1:
		return (uintptr_t)(t->proc->hole + (below(t, t->proc->hole_len) & ~7ULL));
	case 2:
		return (uintptr_t)t->guard_lo + below(t, PAGE);
	case 3:
		return (uintptr_t)t->ro; /* readable, not writable */
	case 4:
		return 0xffff888000000000ULL; /* a kernel address */
	case 5:
		return (uint64_t)-PAGE;
	default:
		return 1;
	}
}

/* Where a pointer inside a struct points: the second half of the rw arena (the daemon may write
 * there, e.g. a bitmap), sometimes somewhere bad. */
static uint64_t data_pointer(struct chaos_thread *t)
{
	if (chance(t, 8))
		return bad_address(t);
	return (uintptr_t)(t->rw + CHAOS_ARENA_RW / 2 + (below(t, CHAOS_ARENA_RW / 4) & ~7ULL));
}

static void fill_random(struct chaos_thread *t, uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd(t);
}

/* ---- values for fields ---------------------------------------------------------------------- */

static void remember_id(uint32_t *pool, unsigned *next, uint32_t id)
{
	if (id != 0)
		pool[(*next)++ % CHAOS_POOL] = id;
}

static void remember_range(struct chaos_thread *t, uint64_t iova, uint64_t length)
{
	t->mapped[t->next_mapped++ % CHAOS_POOL] = (struct chaos_range){iova, length};
}

static uint32_t pick_id(struct chaos_thread *t, const uint32_t *pool)
{
	if (chance(t, 70)) {
		uint32_t id = pool[below(t, CHAOS_POOL)];
		if (id != 0)
			return id;
	}
	if (chance(t, 85))
		return (uint32_t)below(t, 16);
	return (uint32_t)interesting(t, 1);
}

static uint64_t pick_iova(struct chaos_thread *t)
{
	if (chance(t, 40)) {
		struct chaos_range r = t->mapped[below(t, CHAOS_POOL)];
		if (r.length != 0)
			return r.iova + (chance(t, 20) ? below(t, r.length / PAGE) * PAGE : 0);
	}
	switch (below(t, 9)) {
	case 0:
		return 0;
	case 1:
	case 2:
		return below(t, 512) * PAGE;
	case 3:
		return below(t, 16) << 21;
	case 4:
		return (1ULL << 32) + below(t, 64) * PAGE;
	case 5:
		return (1ULL << 59) + below(t, 64) * PAGE; /* where TCE dynamic windows start */
	case 6:
		return 0xfee00000ULL + below(t, 4) * PAGE; /* the VT-d MSI window (reserved) */
	case 7:
		return GIB - PAGE * (1 + below(t, 4)); /* the end of the 32-bit TCE window */
	default:
		return (1ULL << 48) - PAGE * (1 + below(t, 4)); /* the top of a 48-bit aperture */
	}
}

static uint64_t pick_length(struct chaos_thread *t)
{
	if (chance(t, 20)) {
		struct chaos_range r = t->mapped[below(t, CHAOS_POOL)];
		if (r.length != 0)
			return r.length;
	}
	switch (below(t, 10)) {
	case 0:
		return 2 * MIB;
	case 1:
		return 64 * 1024 * (1 + below(t, 4));
	case 2:
		return chance(t, 10) ? GIB : PAGE * (1 + below(t, 512));
	default:
		return PAGE * (1 + below(t, 16));
	}
}

/* Memory of this process that may be mapped for DMA: page-aligned, sometimes 2 MiB-aligned. */
static uint64_t pick_vaddr(struct chaos_thread *t, uint64_t length)
{
	const struct chaos_process *p = t->proc;
	if (length >= p->dma_len)
		return (uintptr_t)p->dma;
	uint64_t room = (p->dma_len - length) / PAGE;
	uint64_t page = below(t, room + 1);
	if (chance(t, 30))
		page &= ~511ULL; /* 2 MiB: superpages */
	return (uintptr_t)(p->dma + page * PAGE);
}

/* An fd of a node of `want` kind: this thread's own, or (rarely) another thread's, read without a
 * lock: it may have been closed, or even reused for something else, a moment ago. */
static int slot_fd(struct chaos_thread *t, int want, int may_borrow)
{
	const struct chaos_slot *slots = t->slot;
	if (may_borrow && !t->in_child && t->proc->nthreads > 1 && chance(t, 15))
		slots = t->proc->threads[below(t, t->proc->nthreads)].slot;
	unsigned start = (unsigned)below(t, CHAOS_SLOTS);
	for (unsigned i = 0; i < CHAOS_SLOTS; i++) {
		const struct chaos_slot *s = &slots[(start + i) % CHAOS_SLOTS];
		int fd = __atomic_load_n(&s->fd, __ATOMIC_RELAXED);
		if (fd >= 0 && (want < 0 || (int)s->kind == want))
			return fd;
	}
	return -1;
}

/* An fd argument: usually a node of the kind the call wants, else anything: another kind of node,
 * a pipe, an eventfd, /dev/null, a socket, a memfd, an O_PATH node, a directory of the mount,
 * another daemon's node, a number just closed, -1, a huge number, stdin/out/err. */
static int pick_fd(struct chaos_thread *t, int want)
{
	unsigned r = (unsigned)below(t, 100);
	int fd = -1;
	if (r < 55)
		fd = slot_fd(t, want, 1);
	else if (r < 68)
		fd = slot_fd(t, -1, 1);
	else if (r < 88)
		fd = t->other[below(t, CHAOS_OTHERS)];
	else if (r < 92 && t->cfg->ninherited > 0)
		fd = t->cfg->inherited[below(t, t->cfg->ninherited)];
	if (fd >= 0)
		return fd;
	switch (below(t, 5)) {
	case 0:
		return -1;
	case 1:
		return t->last_closed;
	case 2:
		return 1 << 20;
	case 3:
		return (int)below(t, 3);
	default:
		return INT_MIN;
	}
}

/* ---- one call ------------------------------------------------------------------------------- */

enum arg_style { ARG_NONE, ARG_VALUE, ARG_PTR };
enum header { HDR_NONE, HDR_ARGSZ, HDR_SIZE };

struct call {
	enum arg_style style;
	unsigned long value; /* ARG_VALUE */
	union {
		uint8_t b[1024];
		uint32_t u32[256];
		uint64_t u64[128];
	} buf; /* ARG_PTR: the argument as built */
	size_t len;
	enum header hdr;
	int passes_fd;
};

typedef void (*build_fn)(struct chaos_thread *t, struct call *c);

/* Starts a struct argument of `size` bytes with its argsz (VFIO) or size (iommufd). */
static void *start_struct(struct call *c, size_t size, enum header hdr)
{
	memset(&c->buf, 0, sizeof(c->buf));
	c->style = ARG_PTR;
	c->len = size;
	c->hdr = hdr;
	if (hdr != HDR_NONE)
		c->buf.u32[0] = (uint32_t)size;
	return c->buf.b;
}

static void start_value(struct call *c, unsigned long value)
{
	c->style = ARG_VALUE;
	c->value = value;
}

/* ---- builders: one per command, valid arguments from what the thread has seen ---------------- */

static void build_none(struct chaos_thread *t, struct call *c)
{
	(void)t;
	c->style = ARG_NONE;
}

static void build_check_extension(struct chaos_thread *t, struct call *c)
{
	start_value(c, chance(t, 90) ? below(t, 12) : interesting(t, 3));
}

static void build_set_iommu(struct chaos_thread *t, struct call *c)
{
	static const unsigned long types[] = {VFIO_TYPE1v2_IOMMU, VFIO_TYPE1_IOMMU,
					      VFIO_SPAPR_TCE_v2_IOMMU, VFIO_SPAPR_TCE_IOMMU,
					      VFIO_NOIOMMU_IOMMU, 6, 0};
	start_value(c, chance(t, 95) ? types[below(t, 7)] : interesting(t, 3));
}

static void build_iommu_info(struct chaos_thread *t, struct call *c)
{
	static const uint32_t sizes[] = {16, 24, sizeof(struct vfio_iommu_spapr_tce_info), 256, 1024};
	start_struct(c, sizes[below(t, 5)], HDR_ARGSZ);
}

static void build_map_dma(struct chaos_thread *t, struct call *c)
{
	struct vfio_iommu_type1_dma_map *m = start_struct(c, sizeof(*m), HDR_ARGSZ);
	static const uint32_t flags[] = {3, 3, 3, 1, 2, 0, VFIO_DMA_MAP_FLAG_VADDR};
	m->flags = flags[below(t, 7)];
	m->size = pick_length(t);
	m->vaddr = chance(t, 5) ? bad_address(t) : pick_vaddr(t, m->size);
	m->iova = pick_iova(t);
}

static void build_unmap_dma(struct chaos_thread *t, struct call *c)
{
	struct {
		struct vfio_iommu_type1_dma_unmap u;
		struct vfio_bitmap bitmap;
	} *a = start_struct(c, sizeof(struct vfio_iommu_type1_dma_unmap), HDR_ARGSZ);
	a->u.iova = pick_iova(t);
	a->u.size = pick_length(t);
	switch (below(t, 8)) {
	case 0:
		a->u.flags = VFIO_DMA_UNMAP_FLAG_ALL;
		a->u.iova = a->u.size = 0;
		break;
	case 1:
		a->u.flags = VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
		a->u.argsz = sizeof(*a);
		c->len = sizeof(*a);
		a->bitmap.pgsize = chance(t, 90) ? PAGE : interesting(t, PAGE);
		a->bitmap.size = ((a->u.size / PAGE + 63) / 64) * 8;
		a->bitmap.data = (void *)(uintptr_t)data_pointer(t);
		break;
	case 2:
		a->u.flags = VFIO_DMA_UNMAP_FLAG_VADDR;
		break;
	default:
		break;
	}
}

static void build_dirty_pages(struct chaos_thread *t, struct call *c)
{
	struct {
		struct vfio_iommu_type1_dirty_bitmap d;
		struct vfio_iommu_type1_dirty_bitmap_get get;
	} *a = start_struct(c, sizeof(struct vfio_iommu_type1_dirty_bitmap), HDR_ARGSZ);
	static const uint32_t flags[] = {VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
					 VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
					 VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, 0, 3};
	a->d.flags = flags[below(t, 5)];
	if (a->d.flags == VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP) {
		a->d.argsz = sizeof(*a);
		c->len = sizeof(*a);
		a->get.iova = pick_iova(t);
		a->get.size = pick_length(t);
		a->get.bitmap.pgsize = PAGE;
		a->get.bitmap.size = ((a->get.size / PAGE + 63) / 64) * 8;
		a->get.bitmap.data = (void *)(uintptr_t)data_pointer(t);
	}
}

static void build_spapr_memory(struct chaos_thread *t, struct call *c)
{
	struct vfio_iommu_spapr_register_memory *r = start_struct(c, sizeof(*r), HDR_ARGSZ);
	r->size = chance(t, 70) ? MIB * (1 + below(t, 4)) : pick_length(t);
	r->vaddr = chance(t, 5) ? bad_address(t) : pick_vaddr(t, r->size);
}

static void build_tce_create(struct chaos_thread *t, struct call *c)
{
	struct vfio_iommu_spapr_tce_create *r = start_struct(c, sizeof(*r), HDR_ARGSZ);
	static const uint32_t shifts[] = {12, 12, 16, 21, 30, 13, 24};
	r->page_shift = shifts[below(t, 7)];
	r->window_size = 1ULL << (20 + below(t, 16));
	r->levels = 1 + (uint32_t)below(t, 6);
}

static void build_tce_remove(struct chaos_thread *t, struct call *c)
{
	struct vfio_iommu_spapr_tce_remove *r = start_struct(c, sizeof(*r), HDR_ARGSZ);
	r->start_addr = chance(t, 30) ? 0 : pick_iova(t);
}

static void build_eeh_pe_op(struct chaos_thread *t, struct call *c)
{
	struct vfio_eeh_pe_op *r =
		start_struct(c, chance(t, 50) ? 12 : sizeof(struct vfio_eeh_pe_op), HDR_ARGSZ);
	c->len = sizeof(*r);
	r->op = (uint32_t)below(t, 11);
	r->err.type = chance(t, 50) ? 0 : 1;
	r->err.func = (uint32_t)below(t, 8);
	r->err.addr = pick_iova(t);
	r->err.mask = rnd(t);
}

static void build_group_status(struct chaos_thread *t, struct call *c)
{
	(void)t;
	start_struct(c, sizeof(struct vfio_group_status), HDR_ARGSZ);
}

static void build_set_container(struct chaos_thread *t, struct call *c)
{
	int *fd = start_struct(c, sizeof(int), HDR_NONE);
	*fd = pick_fd(t, chance(t, 75) ? KIND_CONTAINER : KIND_IOMMU);
}

/* A device name as GET_DEVICE_FD takes it: a BDF of chaos_machine.toml (most are the built-in
 * machine's too), sometimes with options, sometimes long, sometimes not terminated before the
 * end of the page. */
static const char *const device_names[] = {
		"0000:00:01.0", "0000:00:01.1", "0000:00:02.0", "0000:05:00.0", "0000:06:00.0",
		"0000:07:00.0", "0001:00:00.0", "0002:00:00.0", "0000:00:04.0", "0000:0a:00.0",
		"0000:0f:00.0", "0001:01:00.0", "0000:12:00.0", "0000:13:00.0", "0000:09:00.0",
		"0000:00:01.0 vf_token=00000000-0000-0000-0000-000000000000",
		"0000:00:01.0 unknown=1", "", " ", "0000:00:01.0\n",
};
#define NDEVICE_NAMES ((int)(sizeof(device_names) / sizeof(device_names[0])))

static void build_device_name(struct chaos_thread *t, struct call *c)
{
	c->style = ARG_PTR;
	c->hdr = HDR_NONE;
	if (chance(t, 5)) {
		size_t n = 1 + below(t, sizeof(c->buf.b) - 1);
		memset(c->buf.b, 'a', n);
		c->buf.b[n - 1] = '\0';
		c->len = n;
		return;
	}
	const char *name = device_names[below(t, NDEVICE_NAMES)];
	c->len = strlen(name) + 1;
	memcpy(c->buf.b, name, c->len);
}

static void build_device_info(struct chaos_thread *t, struct call *c)
{
	start_struct(c, chance(t, 80) ? sizeof(struct vfio_device_info) : 16, HDR_ARGSZ);
}

static void build_region_info(struct chaos_thread *t, struct call *c)
{
	struct vfio_region_info *r =
		start_struct(c, chance(t, 80) ? sizeof(struct vfio_region_info) : 256, HDR_ARGSZ);
	r->index = (uint32_t)below(t, 11);
}

static void build_irq_info(struct chaos_thread *t, struct call *c)
{
	struct vfio_irq_info *r = start_struct(c, sizeof(*r), HDR_ARGSZ);
	r->index = (uint32_t)below(t, 7);
}

static void build_set_irqs(struct chaos_thread *t, struct call *c)
{
	struct vfio_irq_set *r = start_struct(c, sizeof(struct vfio_irq_set), HDR_ARGSZ);
	static const uint32_t data[] = {VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_BOOL,
					VFIO_IRQ_SET_DATA_EVENTFD};
	static const uint32_t action[] = {VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_UNMASK,
					  VFIO_IRQ_SET_ACTION_TRIGGER};
	r->flags = data[below(t, t->may_pass_fds ? 3 : 2)] | action[below(t, 3)];
	r->index = (uint32_t)(chance(t, 60) ? 0 : below(t, 6));
	r->start = (uint32_t)(chance(t, 80) ? 0 : below(t, 3));
	r->count = (uint32_t)(chance(t, 70) ? 1 : below(t, 4));
	size_t item = r->flags & VFIO_IRQ_SET_DATA_EVENTFD ? 4 : r->flags & VFIO_IRQ_SET_DATA_BOOL ? 1 : 0;
	for (uint32_t i = 0; i < r->count && i < 8; i++) {
		if (item == 4)
			((int32_t *)r->data)[i] = chance(t, 20) ? -1 : pick_fd(t, KIND_OTHER);
		else if (item == 1)
			r->data[i] = (uint8_t)below(t, 2);
	}
	r->argsz = (uint32_t)(sizeof(*r) + item * r->count);
	c->len = sizeof(*r) + 4 * 8;
}

static void build_feature(struct chaos_thread *t, struct call *c)
{
	struct {
		struct vfio_device_feature f;
		int32_t eventfd;
		uint32_t reserved;
	} *r = start_struct(c, sizeof(struct vfio_device_feature), HDR_ARGSZ);
	static const uint32_t ops[] = {VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FEATURE_GET,
				       VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_PROBE |
				       VFIO_DEVICE_FEATURE_SET, 0};
	uint32_t feature = (uint32_t)(chance(t, 80) ? 3 + below(t, 3) : below(t, 12));
	if (feature == VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP && !t->may_pass_fds)
		feature = VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
	r->f.flags = feature | ops[below(t, 5)];
	if (feature == VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP) {
		r->f.argsz = sizeof(*r);
		r->eventfd = pick_fd(t, KIND_OTHER);
		c->passes_fd = 1;
	}
	c->len = sizeof(*r);
}

static void build_bind(struct chaos_thread *t, struct call *c)
{
	struct vfio_device_bind_iommufd *r =
		start_struct(c, chance(t, 80) ? 16 : sizeof(struct vfio_device_bind_iommufd),
			     HDR_ARGSZ);
	c->len = sizeof(*r);
	r->iommufd = pick_fd(t, KIND_IOMMU);
	if (chance(t, 5)) {
		r->flags = VFIO_DEVICE_BIND_FLAG_TOKEN;
		r->argsz = sizeof(*r);
		r->token_uuid_ptr = data_pointer(t);
	}
}

static void build_attach(struct chaos_thread *t, struct call *c)
{
	struct vfio_device_attach_iommufd_pt *r = start_struct(c, sizeof(*r), HDR_ARGSZ);
	r->pt_id = chance(t, 60) ? pick_id(t, t->ioas) : pick_id(t, t->hwpt);
	if (chance(t, 5)) {
		r->flags = VFIO_DEVICE_ATTACH_PASID;
		r->pasid = (uint32_t)below(t, 4);
	}
}

static void build_detach(struct chaos_thread *t, struct call *c)
{
	struct vfio_device_detach_iommufd_pt *r = start_struct(c, sizeof(*r), HDR_ARGSZ);
	if (chance(t, 5))
		r->flags = VFIO_DEVICE_DETACH_PASID;
}

static void build_use_group(struct chaos_thread *t, struct call *c)
{
	start_value(c, (unsigned long)(long)pick_fd(t, KIND_GROUP));
}

static void build_hot_reset_info(struct chaos_thread *t, struct call *c)
{
	start_struct(c, chance(t, 50) ? 12 : 256, HDR_ARGSZ);
}

static void build_hot_reset(struct chaos_thread *t, struct call *c)
{
	struct vfio_pci_hot_reset *r = start_struct(c, sizeof(*r) + 8, HDR_ARGSZ);
	r->count = (uint32_t)below(t, 3);
	r->group_fds[0] = pick_fd(t, KIND_GROUP);
	r->group_fds[1] = pick_fd(t, KIND_IOMMU);
}

static void build_ioeventfd(struct chaos_thread *t, struct call *c)
{
	struct vfio_device_ioeventfd *r = start_struct(c, sizeof(*r), HDR_ARGSZ);
	r->flags = 1u << below(t, 4);
	r->offset = below(t, 0x4000);
	r->data = rnd(t);
	r->fd = pick_fd(t, KIND_OTHER);
}

static void build_random_struct(struct chaos_thread *t, struct call *c)
{
	size_t size = 8 + below(t, 128);
	start_struct(c, size, HDR_ARGSZ);
	fill_random(t, c->buf.b + 8, size - 8);
}

/* ---- iommufd ---- */

static void build_destroy(struct chaos_thread *t, struct call *c)
{
	struct iommu_destroy *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->id = chance(t, 50) ? pick_id(t, t->ioas) : pick_id(t, t->hwpt);
}

static void build_ioas_alloc(struct chaos_thread *t, struct call *c)
{
	struct iommu_ioas_alloc *r = start_struct(c, sizeof(*r), HDR_SIZE);
	if (chance(t, 3))
		r->flags = 1;
}

static uint64_t iova_ranges(struct chaos_thread *t, uint32_t *n)
{
	*n = (uint32_t)below(t, 4);
	uint64_t p = data_pointer(t);
	if (p >= (uintptr_t)t->rw && p < (uintptr_t)t->ro) {
		struct iommu_iova_range *r = (void *)(uintptr_t)p;
		for (uint32_t i = 0; i < *n; i++) {
			r[i].start = pick_iova(t);
			r[i].last = chance(t, 80) ? r[i].start + pick_length(t) - 1 : rnd(t);
		}
	}
	return p;
}

static void build_allow_iovas(struct chaos_thread *t, struct call *c)
{
	struct iommu_ioas_allow_iovas *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->ioas_id = pick_id(t, t->ioas);
	r->allowed_iovas = iova_ranges(t, &r->num_iovas);
}

static void build_ioas_copy(struct chaos_thread *t, struct call *c)
{
	struct iommu_ioas_copy *r = start_struct(c, sizeof(*r), HDR_SIZE);
	static const uint32_t flags[] = {
		IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		IOMMU_IOAS_MAP_READABLE, IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE, 0, 8};
	r->flags = flags[below(t, 5)];
	r->dst_ioas_id = pick_id(t, t->ioas);
	r->src_ioas_id = pick_id(t, t->ioas);
	r->length = pick_length(t);
	r->dst_iova = pick_iova(t);
	r->src_iova = pick_iova(t);
}

static void build_iova_ranges(struct chaos_thread *t, struct call *c)
{
	struct iommu_ioas_iova_ranges *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->ioas_id = pick_id(t, t->ioas);
	r->num_iovas = (uint32_t)below(t, 9);
	r->allowed_iovas = data_pointer(t);
}

static void build_ioas_map(struct chaos_thread *t, struct call *c)
{
	struct iommu_ioas_map *r = start_struct(c, sizeof(*r), HDR_SIZE);
	static const uint32_t flags[] = {
		IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE,
		IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, IOMMU_IOAS_MAP_WRITEABLE, 0};
	r->flags = flags[below(t, 5)];
	r->ioas_id = pick_id(t, t->ioas);
	r->length = pick_length(t);
	r->user_va = chance(t, 5) ? bad_address(t) : pick_vaddr(t, r->length);
	r->iova = pick_iova(t);
}

static void build_ioas_unmap(struct chaos_thread *t, struct call *c)
{
	struct iommu_ioas_unmap *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->ioas_id = pick_id(t, t->ioas);
	if (chance(t, 15)) {
		r->iova = 0;
		r->length = UINT64_MAX;
	} else {
		r->iova = pick_iova(t);
		r->length = pick_length(t);
	}
}

static void build_option(struct chaos_thread *t, struct call *c)
{
	struct iommu_option *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->option_id = (uint32_t)below(t, 3);
	r->op = (uint16_t)below(t, 3);
	r->object_id = chance(t, 50) ? 0 : pick_id(t, t->ioas);
	r->val64 = below(t, 3);
}

static void build_vfio_ioas(struct chaos_thread *t, struct call *c)
{
	struct iommu_vfio_ioas *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->ioas_id = pick_id(t, t->ioas);
	r->op = (uint16_t)below(t, 4);
}

static void build_hwpt_alloc(struct chaos_thread *t, struct call *c)
{
	struct iommu_hwpt_alloc *r =
		start_struct(c, chance(t, 80) ? sizeof(struct iommu_hwpt_alloc) : 24, HDR_SIZE);
	c->len = sizeof(*r);
	static const uint32_t flags[] = {0, 0, 0, IOMMU_HWPT_ALLOC_PASID,
					 IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
					 IOMMU_HWPT_ALLOC_NEST_PARENT, IOMMU_HWPT_FAULT_ID_VALID};
	r->flags = flags[below(t, 7)];
	r->dev_id = pick_id(t, t->devid);
	r->pt_id = chance(t, 80) ? pick_id(t, t->ioas) : pick_id(t, t->hwpt);
	if (chance(t, 10)) {
		r->data_type = (uint32_t)below(t, 3);
		r->data_len = (uint32_t)below(t, 64);
		r->data_uptr = data_pointer(t);
	}
}

static void build_hw_info(struct chaos_thread *t, struct call *c)
{
	struct iommu_hw_info *r =
		start_struct(c, chance(t, 70) ? sizeof(struct iommu_hw_info) : 32, HDR_SIZE);
	c->len = sizeof(*r);
	r->dev_id = pick_id(t, t->devid);
	r->data_len = (uint32_t)(chance(t, 70) ? sizeof(struct iommu_hw_info_vtd) : below(t, 4096));
	r->data_uptr = data_pointer(t);
	if (chance(t, 10)) {
		r->flags = IOMMU_HW_INFO_FLAG_INPUT_TYPE;
		r->in_data_type = (uint32_t)below(t, 4);
	}
}

static void build_dirty_tracking(struct chaos_thread *t, struct call *c)
{
	struct iommu_hwpt_set_dirty_tracking *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->flags = (uint32_t)below(t, 3);
	r->hwpt_id = pick_id(t, t->hwpt);
}

static void build_dirty_bitmap(struct chaos_thread *t, struct call *c)
{
	struct iommu_hwpt_get_dirty_bitmap *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->hwpt_id = pick_id(t, t->hwpt);
	r->flags = (uint32_t)below(t, 3);
	r->iova = pick_iova(t);
	r->length = pick_length(t);
	r->page_size = PAGE;
	r->data = data_pointer(t);
}

static void build_invalidate(struct chaos_thread *t, struct call *c)
{
	struct iommu_hwpt_invalidate *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->hwpt_id = pick_id(t, t->hwpt);
	r->data_uptr = data_pointer(t);
	r->data_type = (uint32_t)below(t, 3);
	r->entry_len = (uint32_t)(chance(t, 70) ? sizeof(struct iommu_hwpt_vtd_s1_invalidate) :
						   below(t, 64));
	r->entry_num = (uint32_t)below(t, 4);
}

static void build_fault_queue(struct chaos_thread *t, struct call *c)
{
	struct iommu_fault_alloc *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->flags = (uint32_t)below(t, 2);
}

static void build_map_file(struct chaos_thread *t, struct call *c)
{
	struct iommu_ioas_map_file *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->flags = IOMMU_IOAS_MAP_READABLE | (chance(t, 50) ? IOMMU_IOAS_MAP_FIXED_IOVA : 0);
	r->ioas_id = pick_id(t, t->ioas);
	r->fd = pick_fd(t, KIND_OTHER);
	r->start = below(t, 16) * PAGE;
	r->length = pick_length(t);
	r->iova = pick_iova(t);
}

static void build_viommu_alloc(struct chaos_thread *t, struct call *c)
{
	struct iommu_viommu_alloc *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->type = (uint32_t)below(t, 3);
	r->dev_id = pick_id(t, t->devid);
	r->hwpt_id = pick_id(t, t->hwpt);
}

static void build_vdevice_alloc(struct chaos_thread *t, struct call *c)
{
	struct iommu_vdevice_alloc *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->viommu_id = pick_id(t, t->hwpt);
	r->dev_id = pick_id(t, t->devid);
	r->virt_id = below(t, 4);
}

static void build_change_process(struct chaos_thread *t, struct call *c)
{
	(void)t;
	start_struct(c, sizeof(struct iommu_ioas_change_process), HDR_SIZE);
}

static void build_veventq_alloc(struct chaos_thread *t, struct call *c)
{
	struct iommu_veventq_alloc *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->viommu_id = pick_id(t, t->hwpt);
	r->type = (uint32_t)below(t, 3);
	r->veventq_depth = (uint32_t)below(t, 4);
}

static void build_hw_queue_alloc(struct chaos_thread *t, struct call *c)
{
	struct iommu_hw_queue_alloc *r = start_struct(c, sizeof(*r), HDR_SIZE);
	r->viommu_id = pick_id(t, t->hwpt);
	r->type = (uint32_t)below(t, 2);
	r->nesting_parent_iova = pick_iova(t);
	r->length = pick_length(t);
}

/* ---- the command table ---------------------------------------------------------------------- */

#define K(kind) (1u << KIND_##kind)

struct command {
	const char *name;
	unsigned long request;
	unsigned kinds;   /* the node kinds that serve it */
	int passes_fd;    /* 1: always an fd argument; builders set call.passes_fd for the rest */
	build_fn build;
};

/* Commands that share a number (type1 and sPAPR on the container, DIRTY_PAGES / REGISTER_MEMORY
 * / FEATURE) have one row per meaning: the arguments differ. */
static const struct command commands[] = {
	{"VFIO_GET_API_VERSION", VFIO_GET_API_VERSION, K(CONTAINER) | K(IOMMU), 0, build_none},
	{"VFIO_CHECK_EXTENSION", VFIO_CHECK_EXTENSION, K(CONTAINER) | K(IOMMU), 0,
	 build_check_extension},
	{"VFIO_SET_IOMMU", VFIO_SET_IOMMU, K(CONTAINER) | K(IOMMU), 0, build_set_iommu},
	{"VFIO_IOMMU_GET_INFO", VFIO_IOMMU_GET_INFO, K(CONTAINER) | K(IOMMU), 0, build_iommu_info},
	{"VFIO_IOMMU_MAP_DMA", VFIO_IOMMU_MAP_DMA, K(CONTAINER) | K(IOMMU), 0, build_map_dma},
	{"VFIO_IOMMU_UNMAP_DMA", VFIO_IOMMU_UNMAP_DMA, K(CONTAINER) | K(IOMMU), 0, build_unmap_dma},
	{"VFIO_IOMMU_DIRTY_PAGES", VFIO_IOMMU_DIRTY_PAGES, K(CONTAINER) | K(IOMMU), 0,
	 build_dirty_pages},
	{"VFIO_IOMMU_ENABLE", VFIO_IOMMU_ENABLE, K(CONTAINER), 0, build_none},
	{"VFIO_IOMMU_DISABLE", VFIO_IOMMU_DISABLE, K(CONTAINER), 0, build_none},
	{"VFIO_IOMMU_SPAPR_REGISTER_MEMORY", VFIO_IOMMU_SPAPR_REGISTER_MEMORY, K(CONTAINER), 0,
	 build_spapr_memory},
	{"VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY", VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, K(CONTAINER), 0,
	 build_spapr_memory},
	{"VFIO_IOMMU_SPAPR_TCE_CREATE", VFIO_IOMMU_SPAPR_TCE_CREATE, K(CONTAINER), 0,
	 build_tce_create},
	{"VFIO_IOMMU_SPAPR_TCE_REMOVE", VFIO_IOMMU_SPAPR_TCE_REMOVE, K(CONTAINER), 0,
	 build_tce_remove},
	{"VFIO_EEH_PE_OP", VFIO_EEH_PE_OP, K(CONTAINER), 0, build_eeh_pe_op},
	{"VFIO_GROUP_GET_STATUS", VFIO_GROUP_GET_STATUS, K(GROUP), 0, build_group_status},
	{"VFIO_GROUP_SET_CONTAINER", VFIO_GROUP_SET_CONTAINER, K(GROUP), 1, build_set_container},
	{"VFIO_GROUP_UNSET_CONTAINER", VFIO_GROUP_UNSET_CONTAINER, K(GROUP), 0, build_none},
	{"VFIO_GROUP_GET_DEVICE_FD", VFIO_GROUP_GET_DEVICE_FD, K(GROUP), 0, build_device_name},
	{"VFIO_EMU_GROUP_DEVICE", _IO(VFIO_TYPE, 0x7e), K(GROUP), 0, build_device_name},
	{"VFIO_DEVICE_GET_INFO", VFIO_DEVICE_GET_INFO, K(DEVICE), 0, build_device_info},
	{"VFIO_DEVICE_GET_REGION_INFO", VFIO_DEVICE_GET_REGION_INFO, K(DEVICE), 0,
	 build_region_info},
	{"VFIO_DEVICE_GET_IRQ_INFO", VFIO_DEVICE_GET_IRQ_INFO, K(DEVICE), 0, build_irq_info},
	{"VFIO_DEVICE_SET_IRQS", VFIO_DEVICE_SET_IRQS, K(DEVICE), 0, build_set_irqs},
	{"VFIO_DEVICE_RESET", VFIO_DEVICE_RESET, K(DEVICE), 0, build_none},
	{"VFIO_DEVICE_FEATURE", VFIO_DEVICE_FEATURE, K(DEVICE), 0, build_feature},
	{"VFIO_DEVICE_BIND_IOMMUFD", VFIO_DEVICE_BIND_IOMMUFD, K(DEVICE), 1, build_bind},
	{"VFIO_DEVICE_ATTACH_IOMMUFD_PT", VFIO_DEVICE_ATTACH_IOMMUFD_PT, K(DEVICE), 0,
	 build_attach},
	{"VFIO_DEVICE_DETACH_IOMMUFD_PT", VFIO_DEVICE_DETACH_IOMMUFD_PT, K(DEVICE), 0,
	 build_detach},
	{"VFIO_EMU_DEVICE_USE_GROUP", _IO(VFIO_TYPE, 0x7d), K(DEVICE), 1, build_use_group},
	{"VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, K(DEVICE), 0,
	 build_hot_reset_info},
	{"VFIO_DEVICE_PCI_HOT_RESET", VFIO_DEVICE_PCI_HOT_RESET, K(DEVICE), 1, build_hot_reset},
	{"VFIO_DEVICE_IOEVENTFD", VFIO_DEVICE_IOEVENTFD, K(DEVICE), 1, build_ioeventfd},
	{"VFIO_DEVICE_QUERY_GFX_PLANE", VFIO_DEVICE_QUERY_GFX_PLANE, K(DEVICE), 0,
	 build_random_struct},
	{"IOMMU_DESTROY", IOMMU_DESTROY, K(IOMMU), 0, build_destroy},
	{"IOMMU_IOAS_ALLOC", IOMMU_IOAS_ALLOC, K(IOMMU), 0, build_ioas_alloc},
	{"IOMMU_IOAS_ALLOW_IOVAS", IOMMU_IOAS_ALLOW_IOVAS, K(IOMMU), 0, build_allow_iovas},
	{"IOMMU_IOAS_COPY", IOMMU_IOAS_COPY, K(IOMMU), 0, build_ioas_copy},
	{"IOMMU_IOAS_IOVA_RANGES", IOMMU_IOAS_IOVA_RANGES, K(IOMMU), 0, build_iova_ranges},
	{"IOMMU_IOAS_MAP", IOMMU_IOAS_MAP, K(IOMMU), 0, build_ioas_map},
	{"IOMMU_IOAS_UNMAP", IOMMU_IOAS_UNMAP, K(IOMMU), 0, build_ioas_unmap},
	{"IOMMU_OPTION", IOMMU_OPTION, K(IOMMU), 0, build_option},
	{"IOMMU_VFIO_IOAS", IOMMU_VFIO_IOAS, K(IOMMU), 0, build_vfio_ioas},
	{"IOMMU_HWPT_ALLOC", IOMMU_HWPT_ALLOC, K(IOMMU), 0, build_hwpt_alloc},
	{"IOMMU_GET_HW_INFO", IOMMU_GET_HW_INFO, K(IOMMU), 0, build_hw_info},
	{"IOMMU_HWPT_SET_DIRTY_TRACKING", IOMMU_HWPT_SET_DIRTY_TRACKING, K(IOMMU), 0,
	 build_dirty_tracking},
	{"IOMMU_HWPT_GET_DIRTY_BITMAP", IOMMU_HWPT_GET_DIRTY_BITMAP, K(IOMMU), 0,
	 build_dirty_bitmap},
	{"IOMMU_HWPT_INVALIDATE", IOMMU_HWPT_INVALIDATE, K(IOMMU), 0, build_invalidate},
	{"IOMMU_FAULT_QUEUE_ALLOC", IOMMU_FAULT_QUEUE_ALLOC, K(IOMMU), 0, build_fault_queue},
	{"IOMMU_IOAS_MAP_FILE", IOMMU_IOAS_MAP_FILE, K(IOMMU), 1, build_map_file},
	{"IOMMU_VIOMMU_ALLOC", IOMMU_VIOMMU_ALLOC, K(IOMMU), 0, build_viommu_alloc},
	{"IOMMU_VDEVICE_ALLOC", IOMMU_VDEVICE_ALLOC, K(IOMMU), 0, build_vdevice_alloc},
	{"IOMMU_IOAS_CHANGE_PROCESS", IOMMU_IOAS_CHANGE_PROCESS, K(IOMMU), 0,
	 build_change_process},
	{"IOMMU_VEVENTQ_ALLOC", IOMMU_VEVENTQ_ALLOC, K(IOMMU), 0, build_veventq_alloc},
	{"IOMMU_HW_QUEUE_ALLOC", IOMMU_HW_QUEUE_ALLOC, K(IOMMU), 0, build_hw_queue_alloc},
};
#define NCOMMANDS ((int)(sizeof(commands) / sizeof(commands[0])))

const char *chaos_activity_name(int activity)
{
	if (activity >= 0 && activity < NCOMMANDS)
		return commands[activity].name;
	switch (activity) {
	case ACT_IDLE:
		return "nothing";
	case ACT_OPEN:
		return "open";
	case ACT_CLOSE:
		return "close";
	case ACT_RW:
		return "read/write";
	case ACT_MMAP:
		return "mmap";
	case ACT_GARBAGE:
		return "an ioctl outside the table";
	case ACT_WAIT_CHILD:
		return "waiting for its forked child";
	default:
		return "?";
	}
}

static int command_index(const char *name)
{
	for (int i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return i;
	return ACT_GARBAGE;
}

/* Numbers that pass an fd on some node (SET_CONTAINER, SET_IRQS, IOEVENTFD/DISABLE,
 * FEATURE/DIRTY_PAGES/REGISTER, BIND/UNREGISTER, USE_GROUP, MAP_FILE, HOT_RESET/MAP_DMA):
 * random ioctls from threads that must not pass fds avoid them. */
static int may_pass_fd_nr(unsigned nr)
{
	return nr == 0x68 || nr == 0x6e || nr == 0x71 || nr == 0x74 || nr == 0x75 || nr == 0x76 ||
	       nr == 0x7d || nr == 0x8f;
}

/* Whether a built (and maybe mutated) argument passes an fd: the data of SET_IRQS with eventfds,
 * FEATURE's low-power wakeup eventfd. */
static int call_passes_fd(const struct command *cmd, const struct call *c)
{
	if (cmd->passes_fd || c->passes_fd)
		return 1;
	if (cmd->request == VFIO_DEVICE_SET_IRQS)
		return (c->buf.u32[1] & VFIO_IRQ_SET_DATA_EVENTFD) != 0;
	if (cmd->request == VFIO_DEVICE_FEATURE)
		return (c->buf.u32[1] & VFIO_DEVICE_FEATURE_MASK) ==
		       VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP;
	return 0;
}

/* ---- mutation ------------------------------------------------------------------------------- */

static uint32_t mutated_size(struct chaos_thread *t, uint32_t size)
{
	static const uint32_t values[] = {0, 1, 4, 7, 8, 12, 4096, 65536, 0x7fffffff, 0xffffffff};
	switch (below(t, 5)) {
	case 0:
		return size - 1 - (uint32_t)below(t, 4);
	case 1:
		return size / 2;
	case 2:
		return size + 1 + (uint32_t)below(t, 16);
	case 3:
		return values[below(t, sizeof(values) / sizeof(values[0]))];
	default:
		return (uint32_t)rnd(t);
	}
}

/* One to three changes: the argsz/size, a field, bytes past the struct, the bytes placed. */
static void mutate(struct chaos_thread *t, struct call *c)
{
	int n = 1 + (int)below(t, 3);
	for (int i = 0; i < n; i++) {
		if (c->style == ARG_VALUE) {
			c->value = interesting(t, c->value);
			continue;
		}
		if (c->style != ARG_PTR || c->len == 0)
			continue;
		unsigned what = (unsigned)below(t, 100);
		if (what < 30 && c->hdr != HDR_NONE) {
			c->buf.u32[0] = mutated_size(t, c->buf.u32[0]);
		} else if (what < 40 && c->len + 16 <= sizeof(c->buf.b)) {
			/* A longer struct: a zero tail (accepted) or a non-zero one (E2BIG). */
			size_t grow = 8 * (1 + below(t, 2));
			if (chance(t, 50))
				fill_random(t, c->buf.b + c->len, grow);
			else
				memset(c->buf.b + c->len, 0, grow);
			c->len += grow;
			if (c->hdr != HDR_NONE)
				c->buf.u32[0] = (uint32_t)c->len;
		} else if (what < 45) {
			c->len = below(t, c->len); /* the rest is whatever the arena held */
		} else {
			size_t words = c->len / 4;
			if (words == 0)
				continue;
			size_t w = (c->hdr != HDR_NONE && words > 1 && chance(t, 80)) ?
					   1 + below(t, words - 1) :
					   below(t, words);
			if (w % 2 == 0 && 4 * w + 8 <= c->len && chance(t, 50))
				c->buf.u64[w / 2] = interesting(t, c->buf.u64[w / 2]);
			else
				c->buf.u32[w] = (uint32_t)interesting(t, c->buf.u32[w]);
		}
	}
}

/* ---- placing and issuing -------------------------------------------------------------------- */

static void write_protected(struct chaos_thread *t, uint8_t *dst, const void *src, size_t n)
{
	mprotect(t->ro, PAGE, PROT_READ | PROT_WRITE);
	memcpy(dst, src, n);
	mprotect(t->ro, PAGE, PROT_READ);
}

/* Copies the argument into the arena and returns the ioctl's arg. *where is the copy (NULL for
 * a bad pointer), of which *readable bytes may be read back. Usually the first half of the rw
 * arena; sometimes straddling into the read-only page or the guard, or in the read-only page, or
 * a bad address. */
static unsigned long place(struct chaos_thread *t, struct call *c, const uint8_t **where,
			   size_t *readable)
{
	*where = NULL;
	*readable = c->len;
	if (c->style == ARG_NONE)
		return chance(t, 95) ? 0 : rnd(t);
	if (c->style == ARG_VALUE)
		return c->value;
	unsigned r = (unsigned)below(t, 100);
	size_t len = c->len;
	if (r < 4)
		return bad_address(t);
	if (r < 8 && len > 0) { /* ends in the read-only page: the tail is what that page holds */
		size_t k = 1 + below(t, len);
		uint8_t *p = t->ro - k;
		memcpy(p, c->buf.b, k);
		*where = p;
		return (uintptr_t)p;
	}
	if (r < 11) { /* readable, not writable: replies fail */
		write_protected(t, t->ro, c->buf.b, len < PAGE ? len : PAGE);
		*where = t->ro;
		*readable = len < PAGE ? len : PAGE;
		return (uintptr_t)t->ro;
	}
	if (r < 13 && len > 0) { /* runs into the guard page */
		size_t k = 1 + below(t, len);
		uint8_t *p = t->guard_hi - k;
		write_protected(t, p, c->buf.b, k);
		*where = p;
		*readable = k;
		return (uintptr_t)p;
	}
	size_t off = below(t, CHAOS_ARENA_RW / 2 - sizeof(c->buf)) & ~7ULL;
	if (chance(t, 3))
		off += 1 + below(t, 7); /* misaligned */
	memcpy(t->rw + off, c->buf.b, len);
	*where = t->rw + off;
	return (uintptr_t)(t->rw + off);
}

/* ioctl() with the bookkeeping: what the thread is doing (for the hang report), the counts, and
 * a problem report for an errno that should never come back. */
static long issue(struct chaos_thread *t, int fd, enum chaos_kind kind, int node, int activity,
		  unsigned long request, unsigned long arg, const uint8_t *shown, size_t shown_len,
		  int passes_fd)
{
	begin(t, activity, kind, node, request);
	errno = 0;
	long r = ioctl(fd, request, arg);
	int e = r < 0 ? errno : 0;
	end(t);
	add(&t->counts->ioctls, 1);
	count_errno(t->counts->ioctl_errno, e);
	if (unexpected_errno(e, kind, passes_fd)) {
		char bytes[2 * 64 + 1] = "";
		if (shown != NULL)
			hex_bytes(bytes, sizeof(bytes), shown, shown_len < 64 ? shown_len : 64);
		chaos_problem(t->cfg,
			      "%s (%#lx) on %s (%s, fd %d) by pid %d: errno %d (%s); arg %#lx = [%s]",
			      chaos_activity_name(activity), request, node_name(t, node),
			      chaos_kind_name(kind), fd, (int)getpid(), e, strerror(e), arg, bytes);
	}
	errno = e;
	return r;
}

/* The ids and ranges a successful call returned, for later calls to use. */
static void harvest(struct chaos_thread *t, const struct command *cmd, const struct call *c,
		    const uint8_t *p, size_t readable)
{
	if (p == NULL || readable < c->len)
		return;
	uint32_t u32[16] = {0};
	uint64_t u64[8] = {0};
	memcpy(u32, p, sizeof(u32) < c->len ? sizeof(u32) : c->len);
	memcpy(u64, p, sizeof(u64) < c->len ? sizeof(u64) : c->len);
	if (cmd->request == IOMMU_IOAS_ALLOC && c->len >= 12)
		remember_id(t->ioas, &t->next_ioas, u32[2]);
	else if (cmd->request == IOMMU_HWPT_ALLOC && c->len >= 20)
		remember_id(t->hwpt, &t->next_hwpt, u32[4]);
	else if (cmd->request == VFIO_DEVICE_BIND_IOMMUFD && c->len >= 16)
		remember_id(t->devid, &t->next_devid, u32[3]);
	else if (cmd->request == VFIO_DEVICE_ATTACH_IOMMUFD_PT && c->len >= 12)
		remember_id(t->hwpt, &t->next_hwpt, u32[2]);
	else if (cmd->request == IOMMU_IOAS_MAP && c->len >= 40)
		remember_range(t, u64[4], u64[3]);
	else if (cmd->request == VFIO_IOMMU_MAP_DMA && c->len >= 32)
		remember_range(t, u64[2], u64[3]);
	else if (cmd->request == VFIO_IOMMU_SPAPR_TCE_CREATE && c->len >= 40)
		remember_range(t, u64[4], 16 * PAGE);
}

static void table_ioctl(struct chaos_thread *t, int fd, enum chaos_kind kind, int node, int index)
{
	const struct command *cmd = &commands[index];
	struct call c;
	c.passes_fd = 0;
	cmd->build(t, &c);
	if (chance(t, (unsigned)t->cfg->mutate_pct))
		mutate(t, &c);
	int passes_fd = call_passes_fd(cmd, &c);
	if (passes_fd && !t->may_pass_fds)
		return;
	const uint8_t *where;
	size_t readable;
	unsigned long arg = place(t, &c, &where, &readable);
	if (passes_fd)
		add(&t->counts->fd_arg_ioctls, 1);
	long r = issue(t, fd, kind, node, index, cmd->request, arg, c.style == ARG_PTR ? c.buf.b : NULL,
		       c.len, passes_fd);
	if (r >= 0)
		harvest(t, cmd, &c, where, readable);
}

/* A number of the VFIO/iommufd block outside the table's meanings, or a table number with the
 * direction and size bits set (FUSE then copies the argument itself), with random bytes. */
static void garbage_ioctl(struct chaos_thread *t, int fd, enum chaos_kind kind, int node)
{
	unsigned nr = (unsigned)below(t, 256);
	if (!t->may_pass_fds && may_pass_fd_nr(nr))
		nr = 0x64;
	unsigned long request = _IO(VFIO_TYPE, nr);
	if (chance(t, 10))
		request = _IOC((unsigned)below(t, 4), VFIO_TYPE, nr, 8 * below(t, 64));
	unsigned long arg;
	uint8_t *p = NULL;
	switch (below(t, 3)) {
	case 0:
		p = t->rw + (below(t, CHAOS_ARENA_RW / 2 - 1024) & ~7ULL);
		fill_random(t, p, 64);
		if (chance(t, 50))
			((uint32_t *)p)[0] = (uint32_t)below(t, 128);
		arg = (uintptr_t)p;
		break;
	case 1:
		arg = bad_address(t);
		break;
	default:
		arg = chance(t, 50) ? below(t, 64) : rnd(t);
		break;
	}
	issue(t, fd, kind, node, ACT_GARBAGE, request, arg, p, 64, may_pass_fd_nr(nr));
}

/* ---- fds ------------------------------------------------------------------------------------ */

static void set_slot(struct chaos_thread *t, int i, int fd, enum chaos_kind kind, int node)
{
	t->slot[i].kind = kind;
	t->slot[i].node = node;
	__atomic_store_n(&t->slot[i].fd, fd, __ATOMIC_RELEASE);
}

static void close_fd(struct chaos_thread *t, int fd, enum chaos_kind kind, int node)
{
	begin(t, ACT_CLOSE, kind, node, 0);
	close(fd);
	end(t);
	add(&t->counts->closes, 1);
	t->last_closed = fd;
}

static void close_slot(struct chaos_thread *t, int i)
{
	int fd = t->slot[i].fd;
	if (fd < 0)
		return;
	__atomic_store_n(&t->slot[i].fd, -1, __ATOMIC_RELEASE);
	close_fd(t, fd, t->slot[i].kind, t->slot[i].node);
}

/* A free slot, closing one if all are taken. */
static int free_slot(struct chaos_thread *t)
{
	for (int i = 0; i < CHAOS_SLOTS; i++)
		if (t->slot[i].fd < 0)
			return i;
	int i = (int)below(t, CHAOS_SLOTS);
	close_slot(t, i);
	return i;
}

static int adopt(struct chaos_thread *t, int fd, enum chaos_kind kind, int node)
{
	int i = free_slot(t);
	set_slot(t, i, fd, kind, node);
	return i;
}

static int random_node(struct chaos_thread *t, int want)
{
	const struct chaos_config *cfg = t->cfg;
	int start = (int)below(t, (uint64_t)cfg->nnodes);
	for (int i = 0; i < cfg->nnodes; i++) {
		int n = (start + i) % cfg->nnodes;
		if (want < 0 || (int)cfg->nodes[n].kind == want)
			return n;
	}
	return -1;
}

static int open_node_fd(struct chaos_thread *t, int node, int flags)
{
	const struct chaos_node *n = &t->cfg->nodes[node];
	begin(t, ACT_OPEN, n->kind, node, 0);
	errno = 0;
	int fd = open(n->path, flags | O_CLOEXEC);
	int e = fd < 0 ? errno : 0;
	end(t);
	add(&t->counts->opens, 1);
	count_errno(t->counts->open_errno, e);
	if (e != 0 && e != EBUSY)
		chaos_problem(t->cfg, "open %s (flags %#x) by pid %d: errno %d (%s)", n->name,
			      (unsigned)flags, (int)getpid(), e, strerror(e));
	errno = e;
	return fd;
}

/* Closes the thread's group fds: a thread holds at most one group at a time, so that some
 * groups are free for others (a held group makes BIND of its devices EBUSY). */
static void close_groups(struct chaos_thread *t)
{
	for (int i = 0; i < CHAOS_SLOTS; i++)
		if (t->slot[i].fd >= 0 && t->slot[i].kind == KIND_GROUP)
			close_slot(t, i);
}

static void open_step(struct chaos_thread *t)
{
	static const int kinds[] = {KIND_CONTAINER, KIND_CONTAINER, KIND_GROUP, KIND_DEVICE,
				    KIND_DEVICE, KIND_IOMMU};
	int node = random_node(t, kinds[below(t, 6)]);
	if (node < 0)
		return;
	if (t->cfg->nodes[node].kind == KIND_GROUP)
		close_groups(t);
	int flags = O_RDWR;
	if (chance(t, 5))
		flags = chance(t, 50) ? O_RDONLY : O_WRONLY;
	if (chance(t, 5))
		flags |= O_NONBLOCK;
	int fd = open_node_fd(t, node, flags);
	if (fd >= 0)
		adopt(t, fd, t->cfg->nodes[node].kind, node);
}

static void close_step(struct chaos_thread *t)
{
	if (chance(t, 40)) {
		close_groups(t); /* held briefly: their devices can be bound meanwhile */
		return;
	}
	int i = (int)below(t, CHAOS_SLOTS);
	close_slot(t, i);
}

static void dup_step(struct chaos_thread *t)
{
	int i = (int)below(t, CHAOS_SLOTS);
	if (t->slot[i].fd < 0)
		return;
	int fd = fcntl(t->slot[i].fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return;
	add(&t->counts->dups, 1);
	adopt(t, fd, t->slot[i].kind, t->slot[i].node);
}

/* (Re)creates other file number i: what may be passed where a node fd is expected. */
static void open_other(struct chaos_thread *t, int i)
{
	int fds[2];
	int fd = -1;
	switch (i) {
	case 0:
	case 1:
		if (pipe2(fds, O_CLOEXEC) == 0) {
			fd = fds[i];
			close(fds[1 - i]);
		}
		break;
	case 2:
	case 3:
		fd = eventfd(0, EFD_CLOEXEC | (i == 3 ? EFD_SEMAPHORE : 0));
		break;
	case 4:
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
		break;
	case 5:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0) {
			fd = fds[0];
			close(fds[1]);
		}
		break;
	case 6:
		fd = memfd_create("chaos", MFD_CLOEXEC);
		if (fd >= 0 && ftruncate(fd, (off_t)MIB) != 0) {
			close(fd);
			fd = -1;
		}
		break;
	case 7: { /* O_PATH of a node: an fd of the right file that no ioctl works on */
		int node = random_node(t, -1);
		if (node >= 0)
			fd = open(t->cfg->nodes[node].path, O_PATH | O_CLOEXEC);
		break;
	}
	case 8: /* the mount's root directory, and a directory inside it */
	case 9: {
		char path[512];
		snprintf(path, sizeof(path), "%s%s", t->cfg->node_dir, i == 8 ? "" : "/vfio");
		fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		break;
	}
	case 10:
		fd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
		break;
	default:
		fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
		break;
	}
	t->other[i] = fd;
}

static void reopen_other_step(struct chaos_thread *t)
{
	int i = (int)below(t, CHAOS_OTHERS);
	if (t->other[i] >= 0) {
		int fd = t->other[i];
		t->other[i] = -1;
		close(fd);
		t->last_closed = fd;
	}
	open_other(t, i);
}

/* ---- reads, writes, mmap -------------------------------------------------------------------- */

/* `own`: fd is one of this thread's node slots. Other fds (borrowed ones may have become a pipe
 * or an eventfd meanwhile) get no plain read/write: those could block for good; pread, pwrite
 * and mmap fail at once on pipes, sockets and eventfds. */
static void rw_step(struct chaos_thread *t, int fd, enum chaos_kind kind, int node, int own)
{
	uint8_t *buf = t->rw + CHAOS_ARENA_RW / 2;
	size_t len = chance(t, 80) ? 1 + below(t, 64) : below(t, 8192);
	/* Device regions are at index << 40 (config space is index 7, BAR0 index 0). */
	off_t offset = (off_t)((below(t, 10) << 40) + (chance(t, 70) ? below(t, 256) : below(t, 0x5000)));
	long r;
	int activity = ACT_RW;
	begin(t, activity, kind, node, 0);
	errno = 0;
	unsigned how = (unsigned)below(t, 7);
	if (how == 3 && (!own || kind == KIND_OTHER))
		how = 0;
	switch (how) {
	case 0:
	case 1:
		r = pread(fd, buf, len, offset);
		break;
	case 2:
		fill_random(t, buf, len < 64 ? len : 64);
		r = pwrite(fd, buf, len, offset);
		break;
	case 3:
		r = read(fd, buf, len);
		break;
	case 4:
		r = pread(fd, (void *)(uintptr_t)bad_address(t), len, offset);
		break;
	case 5:
		r = pwrite(fd, t->ro, len < PAGE ? len : PAGE, offset);
		break;
	default: {
		activity = ACT_MMAP;
		t->counts->cur_activity = ACT_MMAP;
		void *p = mmap(NULL, PAGE, PROT_READ, chance(t, 50) ? MAP_SHARED : MAP_PRIVATE, fd,
			       chance(t, 80) ? 0 : (off_t)(below(t, 10) << 40));
		r = p == MAP_FAILED ? -1 : 0;
		if (p != MAP_FAILED)
			munmap(p, PAGE); /* never touched: past the file's size it would SIGBUS */
		break;
	}
	}
	int e = r < 0 ? errno : 0;
	end(t);
	add(&t->counts->others, 1);
	count_errno(t->counts->other_errno, e);
	/* EBADF: an O_RDONLY/O_WRONLY node or a borrowed fd closed meanwhile; EACCES: mmap of a
	 * write-only file; EISDIR: a directory of the mount (not a node). */
	if (e != 0 && e != EBADF && e != EACCES && !(e == EISDIR && kind == KIND_OTHER) &&
	    unexpected_errno(e, kind, 0))
		chaos_problem(t->cfg, "%s on %s (%s, fd %d) by pid %d: errno %d (%s)",
			      chaos_activity_name(activity), node_name(t, node),
			      chaos_kind_name(kind), fd, (int)getpid(), e, strerror(e));
}

/* Unmaps and maps again a piece of the DMA memory (sometimes read-only): mappings that refer to
 * it keep their old address, as after a munmap under Linux's pinned pages. */
static void remap_step(struct chaos_thread *t)
{
	struct chaos_process *p = t->proc;
	size_t chunk = 64 * 1024;
	uint8_t *at = p->dma + below(t, p->dma_len / chunk) * chunk;
	int prot = chance(t, 70) ? PROT_READ | PROT_WRITE : PROT_READ;
	mmap(at, chunk, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
}

/* ---- valid sequences ------------------------------------------------------------------------ */

/* A call with a valid argument, placed normally: the struct goes in and its reply comes back in
 * `arg` (arg_len bytes). For value arguments pass arg NULL and the value in `value`. */
static long valid_call(struct chaos_thread *t, int fd, enum chaos_kind kind, int node,
		       const char *name, void *arg, size_t arg_len, unsigned long value)
{
	int index = command_index(name);
	unsigned long request = commands[index].request;
	uint8_t *p = t->rw;
	if (arg != NULL)
		memcpy(p, arg, arg_len);
	int passes_fd = commands[index].passes_fd || request == VFIO_DEVICE_SET_IRQS;
	if (passes_fd)
		add(&t->counts->fd_arg_ioctls, 1);
	long r = issue(t, fd, kind, node, index, request, arg ? (uintptr_t)p : value, arg ? p : NULL,
		       arg_len, passes_fd);
	if (arg != NULL)
		memcpy(arg, p, arg_len);
	return r;
}

/* An fd of `kind`: one the thread holds (if `reuse`), else a new open of a random node of that
 * kind. -1 if none could be had (a group another thread holds). */
static int get_fd(struct chaos_thread *t, enum chaos_kind kind, int reuse, int *node, int *owned)
{
	*owned = 0;
	if (reuse) {
		unsigned start = (unsigned)below(t, CHAOS_SLOTS);
		for (unsigned i = 0; i < CHAOS_SLOTS; i++) {
			const struct chaos_slot *s = &t->slot[(start + i) % CHAOS_SLOTS];
			if (s->fd >= 0 && s->kind == kind) {
				*node = s->node;
				return s->fd;
			}
		}
	}
	*node = random_node(t, kind);
	if (*node < 0)
		return -1;
	int fd = open_node_fd(t, *node, O_RDWR);
	*owned = fd >= 0;
	return fd;
}

/* Keeps the fds a sequence opened (with what they hold) for the random steps, or closes them. */
static void finish_sequence(struct chaos_thread *t, int keep, const int *fds, const int *owned,
			    const int *nodes, const enum chaos_kind *kinds, int n)
{
	for (int i = 0; i < n; i++) {
		if (fds[i] < 0 || !owned[i])
			continue;
		if (keep)
			adopt(t, fds[i], kinds[i], nodes[i]);
		else
			close_fd(t, fds[i], kinds[i], nodes[i]);
	}
	add(&t->counts->sequences, 1);
}

static void map_some_type1(struct chaos_thread *t, int container, int node)
{
	int n = 1 + (int)below(t, 6);
	for (int i = 0; i < n; i++) {
		uint64_t size = PAGE * (1 + below(t, 16));
		if (chance(t, 20))
			size = 2 * MIB;
		struct vfio_iommu_type1_dma_map map = {
			.argsz = sizeof(map),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = pick_vaddr(t, size),
			.iova = (below(t, 64) << 21) + (size < 2 * MIB ? below(t, 256) * PAGE : 0),
			.size = size,
		};
		if (valid_call(t, container, KIND_CONTAINER, node, "VFIO_IOMMU_MAP_DMA", &map,
			       sizeof(map), 0) == 0)
			remember_range(t, map.iova, map.size);
	}
	struct vfio_iommu_type1_info info = {.argsz = sizeof(info)};
	valid_call(t, container, KIND_CONTAINER, node, "VFIO_IOMMU_GET_INFO", &info, sizeof(info), 0);
	if (chance(t, 50)) {
		struct chaos_range r = t->mapped[(t->next_mapped - 1) % CHAOS_POOL];
		struct vfio_iommu_type1_dma_unmap unmap = {
			.argsz = sizeof(unmap), .iova = r.iova, .size = r.length};
		valid_call(t, container, KIND_CONTAINER, node, "VFIO_IOMMU_UNMAP_DMA", &unmap,
			   sizeof(unmap), 0);
	}
	if (chance(t, 20)) {
		struct vfio_iommu_type1_dirty_bitmap dirty = {
			.argsz = sizeof(dirty), .flags = VFIO_IOMMU_DIRTY_PAGES_FLAG_START};
		valid_call(t, container, KIND_CONTAINER, node, "VFIO_IOMMU_DIRTY_PAGES", &dirty,
			   sizeof(dirty), 0);
	}
}

static void map_some_spapr(struct chaos_thread *t, int container, int node, int v2)
{
	uint64_t window = 0;
	uint64_t vaddr = pick_vaddr(t, MIB) & ~(MIB - 1);
	if (v2) {
		struct vfio_iommu_spapr_register_memory reg = {
			.argsz = sizeof(reg), .vaddr = vaddr, .size = MIB};
		valid_call(t, container, KIND_CONTAINER, node, "VFIO_IOMMU_SPAPR_REGISTER_MEMORY",
			   &reg, sizeof(reg), 0);
		struct vfio_iommu_spapr_tce_create create = {
			.argsz = sizeof(create),
			.page_shift = 12,
			.window_size = GIB,
			.levels = 1 + (uint32_t)below(t, 2),
		};
		if (valid_call(t, container, KIND_CONTAINER, node, "VFIO_IOMMU_SPAPR_TCE_CREATE",
			       &create, sizeof(create), 0) == 0) {
			window = create.start_addr;
			remember_range(t, window, 16 * PAGE);
		}
	} else {
		valid_call(t, container, KIND_CONTAINER, node, "VFIO_IOMMU_ENABLE", NULL, 0, 0);
	}
	int n = 1 + (int)below(t, 4);
	for (int i = 0; i < n; i++) {
		struct vfio_iommu_type1_dma_map map = {
			.argsz = sizeof(map),
			.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
			.vaddr = vaddr + below(t, 128) * PAGE,
			.iova = window + below(t, 256) * PAGE,
			.size = PAGE * (1 + below(t, 64)),
		};
		valid_call(t, container, KIND_CONTAINER, node, "VFIO_IOMMU_MAP_DMA", &map,
			   sizeof(map), 0);
	}
	if (chance(t, 30)) {
		struct vfio_iommu_type1_dma_unmap unmap = {
			.argsz = sizeof(unmap), .iova = window, .size = 64 * PAGE};
		valid_call(t, container, KIND_CONTAINER, node, "VFIO_IOMMU_UNMAP_DMA", &unmap,
			   sizeof(unmap), 0);
	}
}

/* VFIO's classic sequence: a container, a group in it, an IOMMU type, mappings. */
static void sequence_container(struct chaos_thread *t)
{
	int fds[2], owned[2], nodes[2];
	enum chaos_kind kinds[2] = {KIND_CONTAINER, KIND_GROUP};
	fds[0] = get_fd(t, KIND_CONTAINER, chance(t, 30), &nodes[0], &owned[0]);
	fds[1] = get_fd(t, KIND_GROUP, 1, &nodes[1], &owned[1]);
	if (fds[0] >= 0 && fds[1] >= 0 &&
	    valid_call(t, fds[1], KIND_GROUP, nodes[1], "VFIO_GROUP_SET_CONTAINER", &fds[0],
		       sizeof(int), 0) == 0) {
		static const unsigned long types[] = {VFIO_TYPE1v2_IOMMU, VFIO_TYPE1_IOMMU,
						      VFIO_SPAPR_TCE_v2_IOMMU,
						      VFIO_SPAPR_TCE_IOMMU};
		/* The group's unit takes only one family: try them from a random start. */
		int first = (int)below(t, 4);
		for (int k = 0; k < 4; k++) {
			int i = (first + k) % 4;
			if (valid_call(t, fds[0], KIND_CONTAINER, nodes[0], "VFIO_SET_IOMMU", NULL,
				       0, types[i]) != 0)
				continue;
			if (i < 2)
				map_some_type1(t, fds[0], nodes[0]);
			else
				map_some_spapr(t, fds[0], nodes[0], i == 2);
			break;
		}
	}
	finish_sequence(t, chance(t, 60), fds, owned, nodes, kinds, 2);
}

/* iommufd alone: IOASes, maps, a copy, ranges, unmaps, destroy. */
static void sequence_iommufd(struct chaos_thread *t)
{
	int fds[1], owned[1], nodes[1];
	enum chaos_kind kinds[1] = {KIND_IOMMU};
	fds[0] = get_fd(t, KIND_IOMMU, chance(t, 50), &nodes[0], &owned[0]);
	if (fds[0] >= 0) {
		int fd = fds[0], node = nodes[0];
		struct iommu_ioas_alloc a = {.size = sizeof(a)}, b = {.size = sizeof(b)};
		if (valid_call(t, fd, KIND_IOMMU, node, "IOMMU_IOAS_ALLOC", &a, sizeof(a), 0) == 0 &&
		    valid_call(t, fd, KIND_IOMMU, node, "IOMMU_IOAS_ALLOC", &b, sizeof(b), 0) == 0) {
			remember_id(t->ioas, &t->next_ioas, a.out_ioas_id);
			remember_id(t->ioas, &t->next_ioas, b.out_ioas_id);
			int n = 1 + (int)below(t, 6);
			for (int i = 0; i < n; i++) {
				uint64_t length = PAGE * (1 + below(t, 32));
				struct iommu_ioas_map map = {
					.size = sizeof(map),
					.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE |
						 (chance(t, 70) ? IOMMU_IOAS_MAP_FIXED_IOVA : 0),
					.ioas_id = a.out_ioas_id,
					.user_va = pick_vaddr(t, length),
					.length = length,
					.iova = below(t, 1024) * PAGE,
				};
				if (valid_call(t, fd, KIND_IOMMU, node, "IOMMU_IOAS_MAP", &map,
					       sizeof(map), 0) == 0)
					remember_range(t, map.iova, map.length);
			}
			struct chaos_range r = t->mapped[(t->next_mapped - 1) % CHAOS_POOL];
			struct iommu_ioas_copy copy = {
				.size = sizeof(copy),
				.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA,
				.dst_ioas_id = b.out_ioas_id,
				.src_ioas_id = a.out_ioas_id,
				.length = r.length,
				.dst_iova = r.iova,
				.src_iova = r.iova,
			};
			valid_call(t, fd, KIND_IOMMU, node, "IOMMU_IOAS_COPY", &copy, sizeof(copy), 0);
			struct iommu_ioas_iova_ranges ranges = {
				.size = sizeof(ranges),
				.ioas_id = a.out_ioas_id,
				.num_iovas = 4,
				.allowed_iovas = (uintptr_t)(t->rw + CHAOS_ARENA_RW / 2),
			};
			valid_call(t, fd, KIND_IOMMU, node, "IOMMU_IOAS_IOVA_RANGES", &ranges,
				   sizeof(ranges), 0);
			if (chance(t, 50)) {
				struct iommu_ioas_unmap unmap = {
					.size = sizeof(unmap), .ioas_id = a.out_ioas_id,
					.iova = 0, .length = UINT64_MAX};
				valid_call(t, fd, KIND_IOMMU, node, "IOMMU_IOAS_UNMAP", &unmap,
					   sizeof(unmap), 0);
			}
			if (chance(t, 30)) {
				struct iommu_destroy d = {.size = sizeof(d), .id = b.out_ioas_id};
				valid_call(t, fd, KIND_IOMMU, node, "IOMMU_DESTROY", &d, sizeof(d), 0);
			}
		}
	}
	finish_sequence(t, chance(t, 60), fds, owned, nodes, kinds, 1);
}

/* The cdev path: BIND, an IOAS, ATTACH, maps, an HWPT, regions, an INTx eventfd. */
static void sequence_cdev(struct chaos_thread *t)
{
	int fds[2], owned[2], nodes[2];
	enum chaos_kind kinds[2] = {KIND_DEVICE, KIND_IOMMU};
	close_groups(t); /* BIND is EBUSY while the device's group is open */
	fds[0] = get_fd(t, KIND_DEVICE, chance(t, 30), &nodes[0], &owned[0]);
	fds[1] = get_fd(t, KIND_IOMMU, chance(t, 50), &nodes[1], &owned[1]);
	if (fds[0] >= 0 && fds[1] >= 0) {
		int dev = fds[0], iommufd = fds[1];
		struct vfio_device_bind_iommufd bind = {.argsz = 16, .iommufd = iommufd};
		if (valid_call(t, dev, KIND_DEVICE, nodes[0], "VFIO_DEVICE_BIND_IOMMUFD", &bind, 16,
			       0) == 0) {
			remember_id(t->devid, &t->next_devid, bind.out_devid);
			struct iommu_hw_info hw = {
				.size = sizeof(hw),
				.dev_id = bind.out_devid,
				.data_len = sizeof(struct iommu_hw_info_vtd),
				.data_uptr = (uintptr_t)(t->rw + CHAOS_ARENA_RW / 2),
			};
			valid_call(t, iommufd, KIND_IOMMU, nodes[1], "IOMMU_GET_HW_INFO", &hw,
				   sizeof(hw), 0);
			struct iommu_ioas_alloc a = {.size = sizeof(a)};
			if (valid_call(t, iommufd, KIND_IOMMU, nodes[1], "IOMMU_IOAS_ALLOC", &a,
				       sizeof(a), 0) == 0) {
				remember_id(t->ioas, &t->next_ioas, a.out_ioas_id);
				struct vfio_device_attach_iommufd_pt attach = {
					.argsz = sizeof(attach), .pt_id = a.out_ioas_id};
				if (valid_call(t, dev, KIND_DEVICE, nodes[0],
					       "VFIO_DEVICE_ATTACH_IOMMUFD_PT", &attach,
					       sizeof(attach), 0) == 0)
					remember_id(t->hwpt, &t->next_hwpt, attach.pt_id);
				uint64_t length = PAGE * (1 + below(t, 64));
				struct iommu_ioas_map map = {
					.size = sizeof(map),
					.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE |
						 IOMMU_IOAS_MAP_FIXED_IOVA,
					.ioas_id = a.out_ioas_id,
					.user_va = pick_vaddr(t, length),
					.length = length,
					.iova = below(t, 512) * PAGE,
				};
				if (valid_call(t, iommufd, KIND_IOMMU, nodes[1], "IOMMU_IOAS_MAP", &map,
					       sizeof(map), 0) == 0)
					remember_range(t, map.iova, map.length);
				if (chance(t, 40)) {
					struct iommu_hwpt_alloc hwpt = {
						.size = sizeof(hwpt),
						.dev_id = bind.out_devid,
						.pt_id = a.out_ioas_id,
					};
					if (valid_call(t, iommufd, KIND_IOMMU, nodes[1],
						       "IOMMU_HWPT_ALLOC", &hwpt, sizeof(hwpt), 0) == 0) {
						remember_id(t->hwpt, &t->next_hwpt, hwpt.out_hwpt_id);
						struct vfio_device_attach_iommufd_pt again = {
							.argsz = sizeof(again),
							.pt_id = hwpt.out_hwpt_id};
						valid_call(t, dev, KIND_DEVICE, nodes[0],
							   "VFIO_DEVICE_ATTACH_IOMMUFD_PT", &again,
							   sizeof(again), 0);
					}
				}
			}
			struct vfio_region_info region = {.argsz = sizeof(region), .index = 7};
			valid_call(t, dev, KIND_DEVICE, nodes[0], "VFIO_DEVICE_GET_REGION_INFO",
				   &region, sizeof(region), 0);
			uint8_t config[64];
			begin(t, ACT_RW, KIND_DEVICE, nodes[0], 0);
			ssize_t got = pread(dev, config, sizeof(config), 7LL << 40);
			end(t);
			add(&t->counts->others, 1);
			count_errno(t->counts->other_errno, got < 0 ? errno : 0);
			if (chance(t, 50) && t->other[2] >= 0) {
				struct {
					struct vfio_irq_set set;
					int32_t fd;
				} irq = {
					.set = {.argsz = sizeof(irq),
						.flags = VFIO_IRQ_SET_DATA_EVENTFD |
							 VFIO_IRQ_SET_ACTION_TRIGGER,
						.index = VFIO_PCI_INTX_IRQ_INDEX,
						.count = 1},
					.fd = t->other[2],
				};
				valid_call(t, dev, KIND_DEVICE, nodes[0], "VFIO_DEVICE_SET_IRQS", &irq,
					   sizeof(irq), 0);
			}
			if (chance(t, 30)) {
				struct vfio_device_detach_iommufd_pt detach = {.argsz = sizeof(detach)};
				valid_call(t, dev, KIND_DEVICE, nodes[0],
					   "VFIO_DEVICE_DETACH_IOMMUFD_PT", &detach, sizeof(detach),
					   0);
			}
		}
	}
	finish_sequence(t, chance(t, 60), fds, owned, nodes, kinds, 2);
}

/* The iommufd VFIO compatibility path: a group joins an iommufd, type1 calls on the iommufd. */
static void sequence_compat(struct chaos_thread *t)
{
	int fds[2], owned[2], nodes[2];
	enum chaos_kind kinds[2] = {KIND_IOMMU, KIND_GROUP};
	fds[0] = get_fd(t, KIND_IOMMU, chance(t, 30), &nodes[0], &owned[0]);
	fds[1] = get_fd(t, KIND_GROUP, 1, &nodes[1], &owned[1]);
	if (fds[0] >= 0 && fds[1] >= 0 &&
	    valid_call(t, fds[1], KIND_GROUP, nodes[1], "VFIO_GROUP_SET_CONTAINER", &fds[0],
		       sizeof(int), 0) == 0) {
		int fd = fds[0];
		valid_call(t, fd, KIND_IOMMU, nodes[0], "VFIO_SET_IOMMU", NULL, 0,
			   chance(t, 70) ? VFIO_TYPE1v2_IOMMU : VFIO_TYPE1_IOMMU);
		int n = 1 + (int)below(t, 4);
		for (int i = 0; i < n; i++) {
			uint64_t size = PAGE * (1 + below(t, 16));
			struct vfio_iommu_type1_dma_map map = {
				.argsz = sizeof(map),
				.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
				.vaddr = pick_vaddr(t, size),
				.iova = below(t, 512) * PAGE,
				.size = size,
			};
			if (valid_call(t, fd, KIND_IOMMU, nodes[0], "VFIO_IOMMU_MAP_DMA", &map,
				       sizeof(map), 0) == 0)
				remember_range(t, map.iova, map.size);
		}
		struct chaos_range last = t->mapped[(t->next_mapped - 1) % CHAOS_POOL];
		struct vfio_iommu_type1_dma_unmap unmap = {
			.argsz = sizeof(unmap), .iova = last.iova, .size = last.length};
		if (chance(t, 30)) {
			unmap.flags = VFIO_DMA_UNMAP_FLAG_ALL;
			unmap.iova = unmap.size = 0;
		}
		valid_call(t, fd, KIND_IOMMU, nodes[0], "VFIO_IOMMU_UNMAP_DMA", &unmap, sizeof(unmap),
			   0);
		struct iommu_vfio_ioas get = {.size = sizeof(get), .op = IOMMU_VFIO_IOAS_GET};
		if (valid_call(t, fd, KIND_IOMMU, nodes[0], "IOMMU_VFIO_IOAS", &get, sizeof(get),
			       0) == 0)
			remember_id(t->ioas, &t->next_ioas, get.ioas_id);
		if (chance(t, 30))
			valid_call(t, fds[1], KIND_GROUP, nodes[1], "VFIO_GROUP_UNSET_CONTAINER",
				   NULL, 0, 0);
	}
	finish_sequence(t, chance(t, 60), fds, owned, nodes, kinds, 2);
}

/* A group-path device: container + group + IOMMU, then a cdev used through the group. */
static void sequence_group_device(struct chaos_thread *t)
{
	int fds[3], owned[3], nodes[3];
	enum chaos_kind kinds[3] = {KIND_CONTAINER, KIND_GROUP, KIND_DEVICE};
	fds[0] = get_fd(t, KIND_CONTAINER, 0, &nodes[0], &owned[0]);
	fds[1] = get_fd(t, KIND_GROUP, 1, &nodes[1], &owned[1]);
	fds[2] = -1;
	owned[2] = 0;
	nodes[2] = -1;
	/* The cdev of a device of the group, found as the GET_DEVICE_FD shim finds it: the names the
	 * group's devices have answer with N of vfio/devices/vfioN, the others ENODEV. */
	for (int i = 0, start = (int)below(t, NDEVICE_NAMES); fds[1] >= 0 && i < NDEVICE_NAMES; i++) {
		const char *name = device_names[(start + i) % NDEVICE_NAMES];
		char copy[64];
		snprintf(copy, sizeof(copy), "%s", name);
		long n = valid_call(t, fds[1], KIND_GROUP, nodes[1], "VFIO_EMU_GROUP_DEVICE", copy,
				    strlen(copy) + 1, 0);
		if (n < 0)
			continue;
		char cdev[64];
		snprintf(cdev, sizeof(cdev), "vfio/devices/vfio%ld", n);
		for (int k = 0; k < t->cfg->nnodes; k++)
			if (strcmp(t->cfg->nodes[k].name, cdev) == 0)
				nodes[2] = k;
		break;
	}
	if (nodes[2] >= 0) {
		fds[2] = open_node_fd(t, nodes[2], O_RDWR);
		owned[2] = fds[2] >= 0;
	} else {
		fds[2] = get_fd(t, KIND_DEVICE, 0, &nodes[2], &owned[2]);
	}
	if (fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0 &&
	    valid_call(t, fds[1], KIND_GROUP, nodes[1], "VFIO_GROUP_SET_CONTAINER", &fds[0],
		       sizeof(int), 0) == 0 &&
	    valid_call(t, fds[0], KIND_CONTAINER, nodes[0], "VFIO_SET_IOMMU", NULL, 0,
		       VFIO_TYPE1v2_IOMMU) == 0 &&
	    valid_call(t, fds[2], KIND_DEVICE, nodes[2], "VFIO_EMU_DEVICE_USE_GROUP", NULL, 0,
		       (unsigned long)fds[1]) == 0) {
		struct vfio_device_info info = {.argsz = sizeof(info)};
		valid_call(t, fds[2], KIND_DEVICE, nodes[2], "VFIO_DEVICE_GET_INFO", &info,
			   sizeof(info), 0);
		if (chance(t, 30))
			valid_call(t, fds[2], KIND_DEVICE, nodes[2], "VFIO_DEVICE_RESET", NULL, 0, 0);
		map_some_type1(t, fds[0], nodes[0]);
	}
	finish_sequence(t, chance(t, 60), fds, owned, nodes, kinds, 3);
}

static void sequence_step(struct chaos_thread *t)
{
	if (!t->may_pass_fds) {
		sequence_iommufd(t);
		return;
	}
	switch (below(t, 5)) {
	case 0:
		sequence_container(t);
		break;
	case 1:
		sequence_iommufd(t);
		break;
	case 2:
		sequence_cdev(t);
		break;
	case 3:
		sequence_compat(t);
		break;
	default:
		sequence_group_device(t);
		break;
	}
}

/* ---- forks ---------------------------------------------------------------------------------- */

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Waits for `pid` for up to `ms` milliseconds; returns 1 (and *status) once it is reaped. */
static int wait_for(pid_t pid, int *status, uint64_t ms)
{
	uint64_t deadline = chaos_now_ns() + ms * 1000000ULL;
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 1;
		if (r < 0 && errno != EINTR)
			return 1; /* not our child any more: nothing to wait for */
		if (chaos_now_ns() >= deadline)
			return 0;
		sleep_ms(1);
	}
}

/* The child of a fork: it holds every fd the process had. It leaves at once (its copies close:
 * nothing is released, the parent still holds the files), closes its copies of the node fds,
 * or uses them for a while; the parent may kill it meanwhile. */
static void child_main(struct chaos_thread *t)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	t->in_child = 1;
	t->rng ^= (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL;
	switch (below(t, 4)) {
	case 0:
		break;
	case 1:
		for (int i = 0; i < CHAOS_SLOTS; i++)
			close_slot(t, i);
		break;
	default: {
		int steps = 10 + (int)below(t, 60);
		for (int i = 0; i < steps && !__atomic_load_n(&t->cfg->shared->stop, __ATOMIC_RELAXED);
		     i++)
			chaos_step(t);
		break;
	}
	}
	_exit(0);
}

static void fork_step(struct chaos_thread *t)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return;
	if (pid == 0) {
		if (getppid() != parent)
			_exit(0);
		child_main(t);
	}
	add(&t->counts->forks, 1);
	int killed = 0;
	if (chance(t, 30)) {
		sleep_ms(below(t, 20));
		kill(pid, SIGKILL);
		killed = 1;
		add(&t->counts->children_killed, 1);
	}
	begin(t, ACT_WAIT_CHILD, KIND_OTHER, -1, 0);
	int status = 0;
	if (!wait_for(pid, &status, 5000)) {
		kill(pid, SIGKILL);
		killed = 1;
		if (!wait_for(pid, &status, 5000)) {
			chaos_problem(t->cfg, "forked child %d of pid %d did not die within 5 s of "
					      "SIGKILL (stuck in the kernel?)", (int)pid, (int)parent);
			end(t);
			return;
		}
	}
	end(t);
	if (WIFSIGNALED(status) && !(killed && WTERMSIG(status) == SIGKILL))
		chaos_problem(t->cfg, "forked child %d of pid %d died of signal %d", (int)pid,
			      (int)parent, WTERMSIG(status));
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
		chaos_problem(t->cfg, "forked child %d of pid %d exited with %d", (int)pid,
			      (int)parent, WEXITSTATUS(status));
}

/* ---- one step ------------------------------------------------------------------------------- */

/* An ioctl that passes an fd, on a node of the kind that takes it (opened if the thread has
 * none): for --fd-passing-percent, which makes them as frequent as wanted. */
static void fd_passing_ioctl(struct chaos_thread *t)
{
	static const char *const names[] = {"VFIO_GROUP_SET_CONTAINER", "VFIO_DEVICE_BIND_IOMMUFD",
					    "VFIO_EMU_DEVICE_USE_GROUP", "IOMMU_IOAS_MAP_FILE"};
	int index = command_index(names[below(t, 4)]);
	enum chaos_kind kind = commands[index].kinds & K(GROUP)	   ? KIND_GROUP :
			       commands[index].kinds & K(DEVICE) ? KIND_DEVICE :
								   KIND_IOMMU;
	int node, owned;
	int fd = get_fd(t, kind, 1, &node, &owned);
	if (fd < 0)
		return;
	if (owned)
		adopt(t, fd, kind, node);
	table_ioctl(t, fd, kind, node, index);
}

void chaos_step(struct chaos_thread *t)
{
	add(&t->counts->ops, 1);
	if (t->may_pass_fds && t->cfg->fd_passing_pct > 0 &&
	    chance(t, (unsigned)t->cfg->fd_passing_pct)) {
		fd_passing_ioctl(t);
		return;
	}
	unsigned r = (unsigned)below(t, 1000);
	if (r < 30) {
		open_step(t);
		return;
	}
	if (r < 50) {
		close_step(t);
		return;
	}
	if (r < 55) {
		dup_step(t);
		return;
	}
	if (r < 60) {
		reopen_other_step(t);
		return;
	}
	if (r < 63 && !t->in_child && t->cfg->forks) {
		fork_step(t);
		return;
	}
	if (r < 68 && !t->in_child) {
		sequence_step(t);
		return;
	}
	if (r < 70) {
		remap_step(t);
		return;
	}
	/* Something on an fd: usually one of this thread's nodes, sometimes another thread's
	 * (which may be closed or reused meanwhile), sometimes not a node at all. */
	int fd = -1, node = -1, own = 0;
	enum chaos_kind kind = KIND_OTHER;
	unsigned which = (unsigned)below(t, 100);
	if (which < 4) {
		fd = t->other[below(t, CHAOS_OTHERS)];
	} else if (which < 12 && !t->in_child && t->proc->nthreads > 1) {
		const struct chaos_slot *s =
			&t->proc->threads[below(t, t->proc->nthreads)].slot[below(t, CHAOS_SLOTS)];
		fd = __atomic_load_n(&s->fd, __ATOMIC_RELAXED);
		kind = s->kind;
		node = s->node;
	} else {
		const struct chaos_slot *s = &t->slot[below(t, CHAOS_SLOTS)];
		fd = s->fd;
		kind = s->kind;
		node = s->node;
		own = 1;
	}
	if (fd < 0) {
		open_step(t);
		return;
	}
	if (r < 100) {
		rw_step(t, fd, kind, node, own);
		return;
	}
	unsigned how = (unsigned)below(t, 100);
	if (how < 14) {
		garbage_ioctl(t, fd, kind, node);
		return;
	}
	int index = (int)below(t, NCOMMANDS);
	if (how < 92 && kind != KIND_OTHER) {
		/* A command this kind of node serves. */
		for (int i = 0; i < NCOMMANDS; i++) {
			int j = (index + i) % NCOMMANDS;
			if (commands[j].kinds & (1u << kind)) {
				index = j;
				break;
			}
		}
	}
	table_ioctl(t, fd, kind, node, index);
}

/* ---- setup ---------------------------------------------------------------------------------- */

int chaos_thread_init(struct chaos_thread *t, const struct chaos_config *cfg,
		      struct chaos_process *proc, struct chaos_counts *counts, uint64_t seed,
		      int may_pass_fds)
{
	memset(t, 0, sizeof(*t));
	t->cfg = cfg;
	t->proc = proc;
	t->counts = counts;
	t->rng = seed | 1;
	t->may_pass_fds = may_pass_fds;
	t->last_closed = 1 << 16;
	for (int i = 0; i < CHAOS_SLOTS; i++)
		t->slot[i].fd = -1;
	size_t total = PAGE + CHAOS_ARENA_RW + PAGE + PAGE;
	uint8_t *a = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return -1;
	t->guard_lo = a;
	t->rw = a + PAGE;
	t->ro = t->rw + CHAOS_ARENA_RW;
	t->guard_hi = t->ro + PAGE;
	if (mprotect(t->rw, CHAOS_ARENA_RW, PROT_READ | PROT_WRITE) ||
	    mprotect(t->ro, PAGE, PROT_READ))
		return -1;
	for (int i = 0; i < CHAOS_OTHERS; i++)
		open_other(t, i);
	return 0;
}

void chaos_thread_close_all(struct chaos_thread *t)
{
	for (int i = 0; i < CHAOS_SLOTS; i++)
		close_slot(t, i);
	for (int i = 0; i < CHAOS_OTHERS; i++)
		if (t->other[i] >= 0) {
			close(t->other[i]);
			t->other[i] = -1;
		}
}
