/*
 * fd arguments from a hostile client must not freeze the daemon for everyone else.
 *
 *   hostile_fds NODE_DIR storm|slowfs|settle|pidfds
 *
 *   storm   100 threads at once pass fds (VFIO_GROUP_SET_CONTAINER, VFIO_DEVICE_BIND_IOMMUFD):
 *           more than the daemon has request threads. Identifying a passed fd is a request to
 *           the daemon itself, so a daemon whose request threads wait for it deadlocks.
 *   slowfs  80 threads pass an fd of a stalled FUSE filesystem (a second vfio-emud, stopped
 *           with SIGSTOP: run_with_daemon.sh --second-daemon). The daemon must learn that it is
 *           not its own without a request to that filesystem (no GETATTR, no FLUSH on close).
 *   settle  while a group is really held, another user loops dup()+close() of a container fd;
 *           an open of the held group still answers EBUSY at once (the settle window after a
 *           close is for the file that conflicts, and bounded).
 *   pidfds  1100 short-lived processes each open a node; afterwards an fd-passing ioctl still
 *           works although the daemon's RLIMIT_NOFILE is 1024 (run_with_daemon.sh
 *           --daemon-nofile 1024): its per-caller caches are bounded by its fd limit.
 *
 * Every wait is bounded: a call that does not come back within its deadline is a failure, and
 * the program exits at once (threads stuck in the daemon cannot be joined).
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- many threads, one call each, all at once -------------------------------------------- */

struct storm_thread {
	pthread_t thread;
	int (*call)(struct storm_thread *);
	int fd_a, fd_b; /* the call's operands */
	int result, error;
};

static pthread_barrier_t storm_start;
static atomic_int storm_done;

static void *storm_main(void *arg)
{
	struct storm_thread *t = arg;
	pthread_barrier_wait(&storm_start);
	errno = 0;
	t->result = t->call(t);
	t->error = errno;
	atomic_fetch_add(&storm_done, 1);
	return NULL;
}

/* Runs every thread's call at once; fails and exits if they are not all back within `limit`
 * seconds. */
static void run_storm(struct storm_thread *threads, int n, double limit, const char *what)
{
	atomic_store(&storm_done, 0);
	if (pthread_barrier_init(&storm_start, NULL, (unsigned)n + 1))
		die("pthread_barrier_init");
	for (int i = 0; i < n; i++)
		if (pthread_create(&threads[i].thread, NULL, storm_main, &threads[i]))
			die("pthread_create");
	double start = now();
	pthread_barrier_wait(&storm_start);
	while (atomic_load(&storm_done) < n && now() - start < limit)
		usleep(10 * 1000);
	int done = atomic_load(&storm_done);
	EXPECT_EQ(done, n, "%s: calls back within %.0f s (%.2f s)", what, limit, now() - start);
	if (done < n) {
		note("%d calls still wait in the daemon: it is frozen", n - done);
		exit(test_finish());
	}
	for (int i = 0; i < n; i++)
		pthread_join(threads[i].thread, NULL);
	pthread_barrier_destroy(&storm_start);
	note("%d calls in %.2f s", n, now() - start);
}

/* How many threads got `want` (0: success, else that errno). */
static int count_results(const struct storm_thread *threads, int n, int want)
{
	int count = 0;
	for (int i = 0; i < n; i++)
		if (want == 0 ? threads[i].result == 0 : threads[i].result < 0 && threads[i].error == want)
			count++;
	return count;
}

static int call_set_container(struct storm_thread *t)
{
	return ioctl(t->fd_a, VFIO_GROUP_SET_CONTAINER, &t->fd_b);
}

static int call_bind(struct storm_thread *t)
{
	return bind_iommufd(t->fd_a, t->fd_b);
}

#define STORM_THREADS 100

static void storm(void)
{
	static struct storm_thread threads[STORM_THREADS];
	printf("-- %d threads pass fds at once\n", STORM_THREADS);
	int group = open_node_settled("vfio/1");
	for (int i = 0; i < STORM_THREADS; i++) {
		struct storm_thread *t = &threads[i];
		if (i % 2 == 0) {
			t->call = call_set_container;
			t->fd_a = group;
			t->fd_b = open_node("vfio/vfio");
		} else {
			t->call = call_bind;
			t->fd_a = open_node("vfio/devices/vfio1");
			t->fd_b = open_node("iommu");
		}
	}
	run_storm(threads, STORM_THREADS, 30, "SET_CONTAINER and BIND_IOMMUFD storm");
	/* One of each wins; the others find the group in a container or the device bound. */
	int set = 0, set_busy = 0, bound = 0, bind_busy = 0;
	for (int i = 0; i < STORM_THREADS; i++) {
		int ok = threads[i].result == 0, einval = threads[i].result < 0 && threads[i].error == EINVAL;
		if (threads[i].call == call_set_container) {
			set += ok;
			set_busy += einval;
		} else {
			bound += ok;
			bind_busy += einval;
		}
	}
	EXPECT_EQ(set, 1, "SET_CONTAINER succeeded once");
	EXPECT_EQ(set_busy, STORM_THREADS / 2 - 1, "the other SET_CONTAINERs: EINVAL");
	EXPECT_EQ(bound, 1, "BIND_IOMMUFD succeeded once");
	EXPECT_EQ(bind_busy, STORM_THREADS / 2 - 1, "the other BINDs: EINVAL");
	for (int i = 0; i < STORM_THREADS; i++) {
		close(threads[i].fd_b);
		if (threads[i].call == call_bind)
			close(threads[i].fd_a);
	}
	close(group);
}

/* ---- an fd of a stalled filesystem -------------------------------------------------------- */

static pid_t stopped_daemon;

static void resume_stopped_daemon(void)
{
	if (stopped_daemon > 0)
		kill(stopped_daemon, SIGCONT);
}

#define SLOWFS_THREADS 80

static void slowfs(void)
{
	static struct storm_thread threads[SLOWFS_THREADS];
	const char *dir2 = getenv("VFIO_EMU_DEV2");
	const char *pid2 = getenv("VFIO_EMU_DAEMON2_PID");
	if (dir2 == NULL || pid2 == NULL)
		die("VFIO_EMU_DEV2 / VFIO_EMU_DAEMON2_PID unset (run_with_daemon.sh --second-daemon)");
	printf("-- %d threads pass an fd of a stopped FUSE daemon's file\n", SLOWFS_THREADS);
	char path[4096];
	snprintf(path, sizeof(path), "%s/vfio/vfio", dir2);
	int slow = open(path, O_RDWR);
	if (slow < 0)
		die("open %s", path);
	int group = open_node_settled("vfio/2");
	stopped_daemon = (pid_t)atoi(pid2);
	atexit(resume_stopped_daemon);
	if (kill(stopped_daemon, SIGSTOP))
		die("SIGSTOP the second daemon");
	for (int i = 0; i < SLOWFS_THREADS; i++) {
		threads[i].call = call_set_container;
		threads[i].fd_a = group;
		threads[i].fd_b = slow;
	}
	run_storm(threads, SLOWFS_THREADS, 20, "SET_CONTAINER with a stalled file");
	EXPECT_EQ(count_results(threads, SLOWFS_THREADS, EBADFD), SLOWFS_THREADS,
		  "every SET_CONTAINER: EBADFD (not a container)");
	/* The daemon still serves everyone. */
	int container = try_open_node("vfio/vfio");
	EXPECT_OK(container, "open vfio/vfio afterwards");
	if (container >= 0) {
		EXPECT_EQ(ioctl(container, VFIO_GET_API_VERSION), VFIO_API_VERSION, "GET_API_VERSION");
		close(container);
	}
	close(group);
	resume_stopped_daemon();
	/* Only after SIGCONT: this close is a FLUSH to the second daemon. */
	close(slow);
}

/* ---- the settle window -------------------------------------------------------------------- */

static atomic_int churn_stop;

static void *dup_close_churn(void *arg)
{
	int fd = *(int *)arg;
	while (!atomic_load(&churn_stop))
		close(dup(fd));
	return NULL;
}

static void settle(void)
{
	printf("-- a held group while another fd is dup()ed and closed without pause\n");
	int holder = open_node_settled("vfio/2");
	int container = open_node("vfio/vfio");
	pthread_t churn;
	atomic_store(&churn_stop, 0);
	if (pthread_create(&churn, NULL, dup_close_churn, &container))
		die("pthread_create");
	usleep(100 * 1000);
	double slowest = 0;
	for (int i = 0; i < 5; i++) {
		double start = now();
		EXPECT_ERRNO(EBUSY, try_open_node("vfio/2"), "open of the held group (try %d)", i);
		double took = now() - start;
		if (took > slowest)
			slowest = took;
	}
	atomic_store(&churn_stop, 1);
	pthread_join(churn, NULL);
	note("slowest EBUSY: %.3f s", slowest);
	EXPECT_EQ(slowest < 1.0, 1, "EBUSY within 1 s each, however others close their files");
	close(container);
	close(holder);
}

/* ---- many short-lived callers ------------------------------------------------------------- */

static void pidfds(void)
{
	const int processes = 1100;
	const double limit = 40;
	printf("-- %d short-lived processes open a node\n", processes);
	double start = now();
	int done = 0;
	for (; done < processes && now() - start < limit; done++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			int fd = try_open_node("vfio/vfio");
			_exit(fd >= 0 && ioctl(fd, VFIO_GET_API_VERSION) == VFIO_API_VERSION ? 0 : 1);
		}
		if (wait_child(pid) != 0) {
			EXPECT_EQ(0, 1, "process %d could not open and use vfio/vfio", done);
			break;
		}
	}
	note("%d processes in %.1f s", done, now() - start);
	EXPECT_EQ(done >= 1030, 1, "more processes than the daemon's fd limit (%d)", done);
	/* An fd-passing call needs a pidfd and the fetched fd: still possible. */
	int group = open_node_settled("vfio/2");
	int container = open_node("vfio/vfio");
	EXPECT_OK(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container),
		  "SET_CONTAINER after %d callers came and went", done);
	close(group);
	close(container);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	const char *which = argc > 2 ? argv[2] : "";
	if (strcmp(which, "storm") == 0)
		storm();
	else if (strcmp(which, "slowfs") == 0)
		slowfs();
	else if (strcmp(which, "settle") == 0)
		settle();
	else if (strcmp(which, "pidfds") == 0)
		pidfds();
	else
		die("which: storm, slowfs, settle or pidfds, not '%s'", which);
	return test_finish();
}
