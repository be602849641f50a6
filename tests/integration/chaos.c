/*
 * A bounded chaos run against a live vfio-emud: several worker processes with several threads
 * each issue random, mutated and valid calls on every node kind (chaos_calls.c), fork children
 * that use or close what they inherited, and are killed with SIGKILL mid-stream and respawned by
 * this supervisor. It stops after --seconds or --max-ops, whichever comes first (a loaded machine
 * does fewer rounds), and fails if
 *   - a call returns an errno no call should see (ENOTCONN: the daemon died; EIO, ENOSYS, ...),
 *   - a call, close or open takes longer than --hang-seconds (the daemon hangs),
 *   - no thread makes progress for --hang-seconds,
 *   - a process does not die within 5 s of SIGKILL, or dies of anything but our SIGKILL,
 *   - a worker does not stop within 15 s of being told to.
 * Every wait is bounded. It checks nothing of the daemon's state afterwards: chaos.py does, once
 * every process of the run is gone (this program reaps them all before it exits).
 *
 *   chaos NODE_DIR [--seconds S] [--max-ops N] [--processes P] [--threads T]
 *         [--fd-passing-threads N] [--kill-interval-ms MS] [--no-kills] [--no-forks]
 *         [--mutate-percent P] [--hang-seconds S] [--seed N] [--fd-passing-percent P]
 *         [--foreign-dir DIR [--stall-pid PID]]
 *
 * --fd-passing-threads N: threads 0..N-1 of each process may issue ioctls that pass fds (default
 *   2, so at most P*N at once: 64 concurrent ones deadlock the daemon, a known bug).
 *   --fd-passing-percent P makes P% of those threads' steps such ioctls (default 0: only the
 *   natural mix, a few percent).
 * --foreign-dir DIR: nodes of another vfio-emud ($VFIO_EMU_DEV2 by default), passed as fd
 *   arguments. --stall-pid PID: SIGSTOP that daemon for the run, so its nodes are fds of a stalled
 *   FUSE filesystem (a known bug wedges a worker of ours then; off by default).
 *
 * The last line is "chaos-summary {json}" with the counts, for chaos.py.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chaos.h"

#define MIB (1ULL << 20)

struct options {
	double seconds;
	uint64_t max_ops;
	int processes, threads, fd_passing_threads;
	int kill_interval_ms;
	int kills, forks;
	int mutate_pct;
	int fd_passing_pct;
	double hang_seconds;
	uint64_t seed;
	const char *foreign_dir;
	pid_t stall_pid;
};

static struct chaos_config cfg;
static struct options opt = {
	.seconds = 20,
	.max_ops = 50000000,
	.processes = 4,
	.threads = 4,
	.fd_passing_threads = 2,
	.kill_interval_ms = 500,
	.kills = 1,
	.forks = 1,
	.mutate_pct = 30,
	.hang_seconds = 15,
};

uint64_t chaos_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double seconds_since(uint64_t ns)
{
	return (double)(chaos_now_ns() - ns) / 1e9;
}

void chaos_problem(const struct chaos_config *c, const char *fmt, ...)
{
	uint32_t i = __atomic_fetch_add(&c->shared->nproblems, 1, __ATOMIC_RELAXED);
	if (i >= CHAOS_MAX_PROBLEMS)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->shared->problem[i].text, sizeof(c->shared->problem[i].text), fmt, ap);
	va_end(ap);
}

const char *chaos_kind_name(enum chaos_kind kind)
{
	static const char *const names[] = {"container", "group", "device", "iommufd", "not a node"};
	return kind >= 0 && kind < KINDS ? names[kind] : "?";
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "chaos: FATAL: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (e != 0)
		fprintf(stderr, ": %s", strerror(e));
	fprintf(stderr, "\n");
	exit(1);
}

/* ---- the nodes ------------------------------------------------------------------------------ */

static void add_node(const char *name, enum chaos_kind kind)
{
	if (cfg.nnodes >= CHAOS_MAX_NODES)
		return;
	struct chaos_node *n = &cfg.nodes[cfg.nnodes++];
	snprintf(n->name, sizeof(n->name), "%s", name);
	snprintf(n->path, sizeof(n->path), "%s/%s", cfg.node_dir, name);
	n->kind = kind;
}

/* Every node under NODE_DIR: vfio/vfio, vfio/<group>, vfio/devices/vfioN, iommu. */
static void find_nodes(void)
{
	char path[512], name[300];
	snprintf(path, sizeof(path), "%s/vfio", cfg.node_dir);
	DIR *d = opendir(path);
	if (d == NULL)
		die("opendir %s", path);
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (strcmp(e->d_name, "vfio") == 0) {
			add_node("vfio/vfio", KIND_CONTAINER);
		} else if (e->d_name[0] >= '0' && e->d_name[0] <= '9') {
			snprintf(name, sizeof(name), "vfio/%s", e->d_name);
			add_node(name, KIND_GROUP);
		}
	}
	closedir(d);
	snprintf(path, sizeof(path), "%s/vfio/devices", cfg.node_dir);
	d = opendir(path);
	if (d != NULL) {
		for (struct dirent *e; (e = readdir(d)) != NULL;) {
			if (strncmp(e->d_name, "vfio", 4) != 0)
				continue;
			snprintf(name, sizeof(name), "vfio/devices/%s", e->d_name);
			add_node(name, KIND_DEVICE);
		}
		closedir(d);
	}
	snprintf(path, sizeof(path), "%s/iommu", cfg.node_dir);
	if (access(path, F_OK) == 0)
		add_node("iommu", KIND_IOMMU);
	int have[KINDS] = {0};
	for (int i = 0; i < cfg.nnodes; i++)
		have[cfg.nodes[i].kind]++;
	if (!have[KIND_CONTAINER] || !have[KIND_GROUP] || !have[KIND_DEVICE] || !have[KIND_IOMMU]) {
		errno = 0;
		die("%s lacks a node kind: %d containers, %d groups, %d devices, %d iommu",
		    cfg.node_dir, have[KIND_CONTAINER], have[KIND_GROUP], have[KIND_DEVICE],
		    have[KIND_IOMMU]);
	}
}

/* Another daemon's nodes, opened once here and inherited by every worker (a worker respawned
 * while that daemon is stopped would otherwise block in open). */
static void open_foreign(void)
{
	static const char *const names[] = {"vfio/vfio", "iommu", "vfio/1", "vfio/devices/vfio0"};
	if (opt.foreign_dir == NULL)
		return;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", opt.foreign_dir, names[i]);
		int fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0 && cfg.ninherited < 8)
			cfg.inherited[cfg.ninherited++] = fd;
	}
}

/* ---- a worker process ----------------------------------------------------------------------- */

struct worker {
	pid_t pid;          /* 0: not running */
	uint64_t killed_ns; /* when we sent SIGKILL; 0 if we did not */
	int finished;       /* exited by itself after its count */
	unsigned generation;
};

static void *thread_main(void *arg)
{
	struct chaos_thread *t = arg;
	t->counts->tid = (int32_t)gettid();
	const struct chaos_shared *s = cfg.shared;
	while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED) &&
	       __atomic_load_n(&t->counts->ops, __ATOMIC_RELAXED) < s->max_ops_per_thread)
		chaos_step(t);
	/* Half the threads close what they hold; the others leave it to the process exit. */
	if (t->rng & 1)
		chaos_thread_close_all(t);
	return NULL;
}

static _Noreturn void worker_main(int index, uint64_t seed)
{
	signal(SIGPIPE, SIG_IGN);
	struct chaos_process proc = {0};
	/* 8 MiB of DMA memory, 2 MiB-aligned so that superpages can be mapped; never touched. */
	size_t dma_len = 8 * MIB;
	uint8_t *raw = mmap(NULL, dma_len + 2 * MIB, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	proc.hole_len = MIB;
	proc.hole = mmap(NULL, proc.hole_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	proc.threads = calloc((size_t)opt.threads, sizeof(struct chaos_thread));
	if (raw == MAP_FAILED || proc.hole == MAP_FAILED || proc.threads == NULL)
		_exit(2);
	proc.dma = (uint8_t *)(((uintptr_t)raw + 2 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1));
	proc.dma_len = dma_len;
	proc.nthreads = opt.threads;
	pthread_t tids[CHAOS_MAX_THREADS];
	for (int i = 0; i < opt.threads; i++) {
		struct chaos_counts *counts = &cfg.shared->t[index * opt.threads + i];
		counts->pid = (int32_t)getpid();
		if (chaos_thread_init(&proc.threads[i], &cfg, &proc, counts,
				      seed * 0x100000001b3ULL + (uint64_t)i * 0x9e3779b97f4a7c15ULL,
				      i < opt.fd_passing_threads))
			_exit(2);
	}
	for (int i = 0; i < opt.threads; i++)
		if (pthread_create(&tids[i], NULL, thread_main, &proc.threads[i]) != 0)
			_exit(2);
	/* Each thread stops after its current call once told to; one that does not within 10 s
	 * is stuck in the daemon. */
	uint64_t stop_seen = 0;
	for (int i = 0; i < opt.threads;) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (pthread_timedjoin_np(tids[i], NULL, &ts) == 0) {
			i++;
			continue;
		}
		if (__atomic_load_n(&cfg.shared->stop, __ATOMIC_RELAXED) && stop_seen == 0)
			stop_seen = chaos_now_ns();
		if (stop_seen != 0 && seconds_since(stop_seen) > 10) {
			const struct chaos_counts *c = proc.threads[i].counts;
			chaos_problem(&cfg, "worker %d: thread %d still in %s on %s 10 s after the stop",
				      (int)getpid(), c->tid, chaos_activity_name(c->cur_activity),
				      c->cur_node >= 0 ? cfg.nodes[c->cur_node].name : "-");
			_exit(3);
		}
	}
	_exit(0);
}

static pid_t spawn_worker(int index, struct worker *w)
{
	pid_t self = getpid();
	w->generation++;
	uint64_t seed = opt.seed ^ ((uint64_t)index << 32) ^ ((uint64_t)w->generation << 48);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		setpgid(0, 0); /* its forked children join its group: one kill takes them all */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != self)
			_exit(0);
		worker_main(index, seed);
	}
	setpgid(pid, pid);
	w->pid = pid;
	w->killed_ns = 0;
	return pid;
}

/* ---- the supervisor ------------------------------------------------------------------------- */

static struct worker workers[CHAOS_MAX_THREADS];
static uint64_t kills, respawns, orphans_reaped;

static void clear_activity(int index)
{
	for (int i = 0; i < opt.threads; i++)
		__atomic_store_n(&cfg.shared->t[index * opt.threads + i].cur_since_ns, 0,
				 __ATOMIC_RELEASE);
}

/* Reaps every child that has ended (workers, and orphaned children of killed workers, which come
 * to us as the subreaper). */
static void reap(void)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			return;
		int index = -1;
		for (int i = 0; i < opt.processes; i++)
			if (workers[i].pid == pid)
				index = i;
		if (index < 0) {
			orphans_reaped++;
			continue;
		}
		struct worker *w = &workers[index];
		int by_us = w->killed_ns != 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			w->finished = 1;
		else if (!by_us && WIFSIGNALED(status))
			chaos_problem(&cfg, "worker %d (pid %d) died of signal %d (%s)", index,
				      (int)pid, WTERMSIG(status), strsignal(WTERMSIG(status)));
		else if (!by_us)
			chaos_problem(&cfg, "worker %d (pid %d) exited with status %d", index,
				      (int)pid, WEXITSTATUS(status));
		w->pid = 0;
		clear_activity(index);
	}
}

static uint64_t total_ops(void)
{
	uint64_t n = 0;
	for (int i = 0; i < opt.processes * opt.threads; i++)
		n += __atomic_load_n(&cfg.shared->t[i].ops, __ATOMIC_RELAXED);
	return n;
}

/* A call that has taken longer than --hang-seconds: a problem, with what it was. */
static int find_hang(void)
{
	uint64_t now = chaos_now_ns();
	for (int i = 0; i < opt.processes * opt.threads; i++) {
		const struct chaos_counts *c = &cfg.shared->t[i];
		const struct worker *w = &workers[i / opt.threads];
		uint64_t since = __atomic_load_n(&c->cur_since_ns, __ATOMIC_ACQUIRE);
		if (since == 0 || since > now || w->pid == 0 || w->killed_ns != 0)
			continue;
		double s = (double)(now - since) / 1e9;
		if (s < opt.hang_seconds)
			continue;
		chaos_problem(&cfg, "hang: pid %d thread %d has been in %s (request %#x) on %s (%s) "
				    "for %.1f s",
			      c->pid, c->tid, chaos_activity_name(c->cur_activity), c->cur_request,
			      c->cur_node >= 0 && c->cur_node < cfg.nnodes ? cfg.nodes[c->cur_node].name
									  : "-",
			      chaos_kind_name((enum chaos_kind)c->cur_kind), s);
		return 1;
	}
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static uint64_t rng_state;
static uint64_t supervisor_random(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void run(void)
{
	uint64_t start = chaos_now_ns();
	uint64_t deadline = start + (uint64_t)(opt.seconds * 1e9);
	uint64_t hang_ns = (uint64_t)(opt.hang_seconds * 1e9);
	for (int i = 0; i < opt.processes; i++)
		spawn_worker(i, &workers[i]);
	if (opt.stall_pid > 0 && kill(opt.stall_pid, SIGSTOP) != 0)
		die("SIGSTOP %d", (int)opt.stall_pid);
	uint64_t next_kill = start + (uint64_t)opt.kill_interval_ms * 1000000ULL;
	uint64_t last_ops = 0, last_progress = start;
	for (;;) {
		sleep_ms(10);
		reap();
		uint64_t now = chaos_now_ns();
		if (now >= deadline || cfg.shared->nproblems > 0)
			break;
		int running = 0;
		for (int i = 0; i < opt.processes; i++) {
			struct worker *w = &workers[i];
			if (w->pid == 0 && !w->finished) {
				spawn_worker(i, w);
				respawns++;
			}
			if (w->pid != 0)
				running++;
			if (w->pid != 0 && w->killed_ns != 0 &&
			    now - w->killed_ns > 5000000000ULL) {
				chaos_problem(&cfg, "worker %d (pid %d) did not die within 5 s of "
						    "SIGKILL (stuck in the kernel?)",
					      i, (int)w->pid);
				return;
			}
		}
		if (running == 0)
			break; /* every worker reached its count */
		if (opt.kills && now >= next_kill) {
			struct worker *w = &workers[supervisor_random() % (uint64_t)opt.processes];
			if (w->pid != 0 && w->killed_ns == 0) {
				kill(-w->pid, SIGKILL);
				w->killed_ns = now;
				kills++;
			}
			uint64_t interval = (uint64_t)opt.kill_interval_ms * 1000000ULL;
			next_kill = now + interval / 2 + supervisor_random() % (interval + 1);
		}
		if (find_hang())
			break;
		uint64_t ops = total_ops();
		if (ops != last_ops) {
			last_ops = ops;
			last_progress = now;
		} else if (now - last_progress > hang_ns) {
			chaos_problem(&cfg, "no thread has made progress for %.1f s",
				      opt.hang_seconds);
			break;
		}
	}
}

/* Tells every worker to stop, waits (bounded) for them, then kills and reaps whatever is left,
 * orphans included, until this process has no child. */
static void stop_all(void)
{
	__atomic_store_n(&cfg.shared->stop, 1, __ATOMIC_RELEASE);
	if (opt.stall_pid > 0)
		kill(opt.stall_pid, SIGCONT);
	uint64_t asked = chaos_now_ns();
	for (;;) {
		reap();
		int running = 0;
		for (int i = 0; i < opt.processes; i++)
			running += workers[i].pid != 0;
		if (running == 0)
			break;
		if (seconds_since(asked) > 15) {
			find_hang();
			for (int i = 0; i < opt.processes; i++)
				if (workers[i].pid != 0) {
					chaos_problem(&cfg, "worker %d (pid %d) did not stop within "
							    "15 s",
						      i, (int)workers[i].pid);
					workers[i].killed_ns = chaos_now_ns();
					kill(-workers[i].pid, SIGKILL);
				}
			break;
		}
		sleep_ms(10);
	}
	uint64_t sweep = chaos_now_ns();
	for (;;) {
		for (int i = 0; i < opt.processes; i++)
			if (workers[i].pid != 0)
				kill(-workers[i].pid, SIGKILL);
		reap();
		if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
			break;
		if (seconds_since(sweep) > 10) {
			chaos_problem(&cfg, "processes of the run are still alive 10 s after SIGKILL");
			break;
		}
		sleep_ms(10);
	}
}

/* ---- the report ----------------------------------------------------------------------------- */

static const char *errno_name(int e)
{
	if (e == 0)
		return "ok";
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

/* "ok 123, EINVAL 45, ..." (most frequent first), and the same as a JSON object. */
static void histogram(const char *what, uint64_t (*h)[CHAOS_ERRNOS], char *json, size_t cap)
{
	uint64_t sum[CHAOS_ERRNOS] = {0};
	for (int i = 0; i < opt.processes * opt.threads; i++)
		for (int e = 0; e < CHAOS_ERRNOS; e++)
			sum[e] += h[i][e];
	printf("chaos: %s:", what);
	size_t at = (size_t)snprintf(json, cap, "{");
	for (int shown = 0;; shown++) {
		int best = -1;
		for (int e = 0; e < CHAOS_ERRNOS; e++)
			if (sum[e] > 0 && (best < 0 || sum[e] > sum[best]))
				best = e;
		if (best < 0)
			break;
		printf("%s %s %llu", shown ? "," : "", errno_name(best),
		       (unsigned long long)sum[best]);
		if (at < cap)
			at += (size_t)snprintf(json + at, cap - at, "%s\"%s\": %llu", shown ? ", " : "",
					       errno_name(best), (unsigned long long)sum[best]);
		sum[best] = 0;
	}
	printf("\n");
	if (at < cap)
		snprintf(json + at, cap - at, "}");
}

static int report(double elapsed)
{
	struct chaos_shared *s = cfg.shared;
	uint64_t total[8] = {0};
	static uint64_t ioctl_h[CHAOS_MAX_THREADS][CHAOS_ERRNOS], open_h[CHAOS_MAX_THREADS][CHAOS_ERRNOS],
		other_h[CHAOS_MAX_THREADS][CHAOS_ERRNOS];
	int n = opt.processes * opt.threads;
	for (int i = 0; i < n; i++) {
		const struct chaos_counts *c = &s->t[i];
		total[0] += c->ops;
		total[1] += c->ioctls;
		total[2] += c->fd_arg_ioctls;
		total[3] += c->opens;
		total[4] += c->others;
		total[5] += c->forks;
		total[6] += c->children_killed;
		total[7] += c->sequences;
		memcpy(ioctl_h[i], c->ioctl_errno, sizeof(c->ioctl_errno));
		memcpy(open_h[i], c->open_errno, sizeof(c->open_errno));
		memcpy(other_h[i], c->other_errno, sizeof(c->other_errno));
	}
	uint64_t closes = 0, dups = 0;
	for (int i = 0; i < n; i++) {
		closes += s->t[i].closes;
		dups += s->t[i].dups;
	}
	printf("chaos: %.1f s, %d processes x %d threads (%d per process pass fds), seed %#llx\n",
	       elapsed, opt.processes, opt.threads, opt.fd_passing_threads,
	       (unsigned long long)opt.seed);
	printf("chaos: %llu actions: %llu ioctls (%llu passing fds), %llu opens, %llu closes, "
	       "%llu dups, %llu reads/writes/mmaps, %llu valid sequences\n",
	       (unsigned long long)total[0], (unsigned long long)total[1],
	       (unsigned long long)total[2], (unsigned long long)total[3],
	       (unsigned long long)closes, (unsigned long long)dups, (unsigned long long)total[4],
	       (unsigned long long)total[7]);
	printf("chaos: workers killed %llu (respawned %llu), forks %llu (children killed %llu), "
	       "orphans reaped %llu\n",
	       (unsigned long long)kills, (unsigned long long)respawns,
	       (unsigned long long)total[5], (unsigned long long)total[6],
	       (unsigned long long)orphans_reaped);
	char ij[4096], oj[2048], rj[2048];
	histogram("ioctl results", ioctl_h, ij, sizeof(ij));
	histogram("open results", open_h, oj, sizeof(oj));
	histogram("read/write/mmap results", other_h, rj, sizeof(rj));
	uint32_t np = s->nproblems;
	if (np == 0)
		printf("chaos: no problems\n");
	for (uint32_t i = 0; i < np && i < CHAOS_MAX_PROBLEMS; i++)
		printf("chaos: PROBLEM: %s\n", s->problem[i].text);
	if (np > CHAOS_MAX_PROBLEMS)
		printf("chaos: ... and %u more problems\n", np - CHAOS_MAX_PROBLEMS);
	printf("chaos-summary {\"seconds\": %.2f, \"processes\": %d, \"threads\": %d, "
	       "\"fd_passing_threads\": %d, \"actions\": %llu, \"ioctls\": %llu, "
	       "\"fd_passing_ioctls\": %llu, \"opens\": %llu, \"closes\": %llu, "
	       "\"reads_writes_mmaps\": %llu, \"sequences\": %llu, \"kills\": %llu, "
	       "\"respawns\": %llu, \"forks\": %llu, \"children_killed\": %llu, "
	       "\"ioctl_results\": %s, \"open_results\": %s, \"rw_results\": %s, \"problems\": %u}\n",
	       elapsed, opt.processes, opt.threads, opt.fd_passing_threads,
	       (unsigned long long)total[0], (unsigned long long)total[1],
	       (unsigned long long)total[2], (unsigned long long)total[3],
	       (unsigned long long)closes, (unsigned long long)total[4],
	       (unsigned long long)total[7], (unsigned long long)kills,
	       (unsigned long long)respawns, (unsigned long long)total[5],
	       (unsigned long long)total[6], ij, oj, rj, np);
	return np == 0 && total[1] > 0 ? 0 : 1;
}

/* ---- options -------------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr,
		"usage: chaos NODE_DIR [--seconds S] [--max-ops N] [--processes P] [--threads T]\n"
		"             [--fd-passing-threads N] [--kill-interval-ms MS] [--no-kills]\n"
		"             [--no-forks] [--mutate-percent P] [--hang-seconds S] [--seed N]\n"
		"             [--fd-passing-percent P]\n"
		"             [--foreign-dir DIR [--stall-pid PID]]\n");
	exit(2);
}

static void parse(int argc, char **argv)
{
	if (argc < 2 || argv[1][0] == '-')
		usage();
	cfg.node_dir = argv[1];
	opt.foreign_dir = getenv("VFIO_EMU_DEV2");
	opt.seed = chaos_now_ns() ^ ((uint64_t)getpid() << 20);
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--no-kills") == 0) {
			opt.kills = 0;
			continue;
		}
		if (strcmp(a, "--no-forks") == 0) {
			opt.forks = 0;
			continue;
		}
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--seconds") == 0)
			opt.seconds = atof(v);
		else if (strcmp(a, "--max-ops") == 0)
			opt.max_ops = strtoull(v, NULL, 0);
		else if (strcmp(a, "--processes") == 0)
			opt.processes = atoi(v);
		else if (strcmp(a, "--threads") == 0)
			opt.threads = atoi(v);
		else if (strcmp(a, "--fd-passing-threads") == 0)
			opt.fd_passing_threads = atoi(v);
		else if (strcmp(a, "--kill-interval-ms") == 0)
			opt.kill_interval_ms = atoi(v);
		else if (strcmp(a, "--mutate-percent") == 0)
			opt.mutate_pct = atoi(v);
		else if (strcmp(a, "--fd-passing-percent") == 0)
			opt.fd_passing_pct = atoi(v);
		else if (strcmp(a, "--hang-seconds") == 0)
			opt.hang_seconds = atof(v);
		else if (strcmp(a, "--seed") == 0)
			opt.seed = strtoull(v, NULL, 0);
		else if (strcmp(a, "--foreign-dir") == 0)
			opt.foreign_dir = v;
		else if (strcmp(a, "--stall-pid") == 0)
			opt.stall_pid = atoi(v);
		else
			usage();
	}
	if (opt.processes < 1 || opt.threads < 1 ||
	    opt.processes * opt.threads > CHAOS_MAX_THREADS || opt.seconds <= 0 ||
	    opt.kill_interval_ms < 1 || opt.hang_seconds <= 0)
		usage();
	if (opt.foreign_dir != NULL && opt.foreign_dir[0] == '\0')
		opt.foreign_dir = NULL;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	parse(argc, argv);
	find_nodes();
	cfg.processes = opt.processes;
	cfg.threads = opt.threads;
	cfg.fd_passing_threads = opt.fd_passing_threads;
	cfg.forks = opt.forks;
	cfg.mutate_pct = opt.mutate_pct;
	cfg.fd_passing_pct = opt.fd_passing_pct;
	cfg.shared = mmap(NULL, sizeof(struct chaos_shared), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (cfg.shared == MAP_FAILED)
		die("mmap shared counts");
	uint64_t threads_total = (uint64_t)opt.processes * (uint64_t)opt.threads;
	cfg.shared->max_ops_per_thread = (opt.max_ops + threads_total - 1) / threads_total;
	rng_state = opt.seed | 1;
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		die("PR_SET_CHILD_SUBREAPER");
	signal(SIGPIPE, SIG_IGN);
	open_foreign();
	printf("chaos: %d nodes under %s; %d processes x %d threads for %.1f s or %llu actions; "
	       "foreign nodes: %d%s\n",
	       cfg.nnodes, cfg.node_dir, opt.processes, opt.threads, opt.seconds,
	       (unsigned long long)opt.max_ops, cfg.ninherited,
	       opt.stall_pid > 0 ? " (their daemon stopped)" : "");
	uint64_t start = chaos_now_ns();
	run();
	stop_all();
	for (int i = 0; i < cfg.ninherited; i++)
		close(cfg.inherited[i]);
	return report(seconds_since(start));
}
