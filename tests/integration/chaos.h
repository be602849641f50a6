/*
 * The chaos test's shared pieces: what the supervisor and its worker processes keep in shared
 * memory (counts, what each thread is doing right now, problems found), and one worker thread's
 * private state, which chaos_calls.c drives with random, mutated and valid calls.
 *
 * chaos.c is the supervisor (processes, kills, respawns, the report); chaos_calls.c is one
 * thread's actions (opens, closes, ioctls, reads, forks, valid sequences).
 */
#ifndef VFIO_EMU_TESTS_INTEGRATION_CHAOS_H
#define VFIO_EMU_TESTS_INTEGRATION_CHAOS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CHAOS_ERRNOS 160      /* errno values counted one by one; larger ones count as the last */
#define CHAOS_MAX_THREADS 256 /* worker threads over all processes */
#define CHAOS_MAX_PROBLEMS 32
#define CHAOS_SLOTS 12        /* node fds one thread holds at most */
#define CHAOS_OTHERS 12       /* fds of other files one thread keeps to pass as arguments */
#define CHAOS_MAX_NODES 64
#define CHAOS_POOL 8          /* recently returned ids of each kind a thread remembers */

enum chaos_kind { KIND_CONTAINER, KIND_GROUP, KIND_DEVICE, KIND_IOMMU, KIND_OTHER, KINDS };

/* What a thread is doing, for the hang report: a command of the table, or one of these. */
enum chaos_activity {
	ACT_IDLE = -1,
	ACT_OPEN = -2,
	ACT_CLOSE = -3,
	ACT_RW = -4,
	ACT_MMAP = -5,
	ACT_GARBAGE = -6, /* an ioctl number outside the table: cur_request says which */
	ACT_WAIT_CHILD = -7,
};

/* One worker thread's counts and current activity, in memory shared with the supervisor. The
 * thread (and a child it forks) add to it; a respawned worker goes on counting in the same slot. */
struct chaos_counts {
	uint64_t ops;
	uint64_t ioctls, ioctl_errno[CHAOS_ERRNOS]; /* [0]: successes */
	uint64_t fd_arg_ioctls;                      /* ioctls that pass an fd */
	uint64_t opens, open_errno[CHAOS_ERRNOS];
	uint64_t others, other_errno[CHAOS_ERRNOS];  /* read, write, mmap */
	uint64_t closes, dups, forks, children_killed, sequences;
	/* Now: who, what, on which node, since when (CLOCK_MONOTONIC ns; 0 when idle). */
	int32_t pid, tid;
	int32_t cur_activity, cur_kind, cur_node;
	uint32_t cur_request;
	uint64_t cur_since_ns;
};

struct chaos_problem {
	char text[400];
};

struct chaos_shared {
	int stop; /* set by the supervisor: every thread finishes its current call and exits */
	uint64_t max_ops_per_thread;
	uint32_t nproblems;
	struct chaos_problem problem[CHAOS_MAX_PROBLEMS];
	struct chaos_counts t[CHAOS_MAX_THREADS];
};

/* A node of the daemon, found by listing the node directory. */
struct chaos_node {
	char path[300];
	char name[300]; /* relative: "vfio/vfio", "vfio/1", "vfio/devices/vfio0", "iommu" */
	enum chaos_kind kind;
};

/* What every worker knows, set before the first fork. */
struct chaos_config {
	const char *node_dir;
	struct chaos_node nodes[CHAOS_MAX_NODES];
	int nnodes;
	int processes, threads;
	int fd_passing_threads; /* per process: threads 0..n-1 may issue ioctls that pass fds */
	int forks;              /* whether threads fork children */
	int mutate_pct;         /* how often a valid argument is mutated */
	int fd_passing_pct;     /* extra fd-passing ioctls: this share of a passing thread's steps */
	int inherited[8];       /* fds the supervisor opened for all (another daemon's nodes) */
	int ninherited;
	struct chaos_shared *shared;
};

/* Memory one worker process shares among its threads. */
struct chaos_process {
	uint8_t *dma;    /* anonymous memory to map for DMA (never touched) */
	size_t dma_len;
	uint8_t *hole;   /* a PROT_NONE reservation: addresses that are certainly not accessible */
	size_t hole_len;
	struct chaos_thread *threads; /* for borrowing another thread's fd */
	int nthreads;
};

struct chaos_slot {
	int fd; /* -1: free; read by sibling threads without a lock (on purpose) */
	enum chaos_kind kind;
	int node;
};

struct chaos_range {
	uint64_t iova, length;
};

/* One worker thread (or the child it forked). */
struct chaos_thread {
	const struct chaos_config *cfg;
	struct chaos_process *proc;
	struct chaos_counts *counts;
	uint64_t rng;
	int may_pass_fds;
	int in_child; /* a forked child: no forks of its own, no borrowing */
	struct chaos_slot slot[CHAOS_SLOTS];
	int other[CHAOS_OTHERS]; /* pipes, eventfds, /dev/null, sockets, memfd, O_PATH, dirs */
	uint32_t ioas[CHAOS_POOL], hwpt[CHAOS_POOL], devid[CHAOS_POOL];
	struct chaos_range mapped[CHAOS_POOL];
	unsigned next_ioas, next_hwpt, next_devid, next_mapped;
	/* The argument arena: [guard][rw: 64 KiB][ro: 4 KiB][guard]. The daemon writes replies only
	 * into it (or fails on the guard), never into the rest of this process. */
	uint8_t *rw, *ro, *guard_lo, *guard_hi;
	int last_closed; /* a number that was an fd a moment ago */
};

#define CHAOS_ARENA_RW (64 * 1024)

/* ---- chaos_calls.c ---- */

/* Sets up a thread: its arena, its other files. Returns 0, or -1 with errno. */
int chaos_thread_init(struct chaos_thread *t, const struct chaos_config *cfg,
		      struct chaos_process *proc, struct chaos_counts *counts, uint64_t seed,
		      int may_pass_fds);
/* One random action: an open, close, dup, ioctl, read/write, mmap, fork or valid sequence. */
void chaos_step(struct chaos_thread *t);
/* Closes everything the thread holds. */
void chaos_thread_close_all(struct chaos_thread *t);

/* ---- chaos.c ---- */

uint64_t chaos_now_ns(void);
/* Records a problem (printed by the supervisor; the test fails). Safe in any process. */
void chaos_problem(const struct chaos_config *cfg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The name of a command-table entry or activity, for reports. */
const char *chaos_activity_name(int activity);
const char *chaos_kind_name(enum chaos_kind kind);

#endif
