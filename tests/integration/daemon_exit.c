/*
 * The daemon goes away while a client holds its files: after SIGTERM the daemon unmounts and
 * exits, and the client's next calls on the files it still holds fail (ENOTCONN: the FUSE
 * connection is gone) instead of hanging; closing them works; the nodes are gone.
 *
 *   daemon_exit NODE_DIR [busy]      (run_with_daemon.sh --daemon-may-exit)
 *
 * busy: the daemon is told to stop while threads keep passing fds (each one a call the daemon
 * resolves with a request to itself): it still exits at once, and every call comes back.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "client.h"

static void hung(int sig)
{
	(void)sig;
	static const char msg[] = "daemon_exit: FAIL: a call on a file of the dead daemon hung\n";
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

/* Linux answers ENOTCONN on the files of a FUSE connection whose daemon is gone. */
#define EXPECT_GONE(call, ...) EXPECT_ERRNO(ENOTCONN, call, __VA_ARGS__)

static int mounted(const char *dir)
{
	char path[4096];
	if (realpath(dir, path) == NULL)
		return 0;
	FILE *f = fopen("/proc/self/mounts", "re");
	if (f == NULL)
		die("open /proc/self/mounts");
	char line[8192];
	int found = 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, path))
			found = 1;
	fclose(f);
	return found;
}

/* ---- busy: stop while fd arguments are being resolved --------------------------------------- */

#define BUSY_THREADS 24
static int busy_group;
static atomic_int busy_stop, busy_back, busy_calls;

static void *pass_fds(void *arg)
{
	(void)arg;
	int container = open_node("vfio/vfio");
	while (!atomic_load(&busy_stop)) {
		errno = 0;
		int r = ioctl(busy_group, VFIO_GROUP_SET_CONTAINER, &container);
		atomic_fetch_add(&busy_calls, 1);
		if (r < 0 && errno == ENOTCONN)
			break;
	}
	atomic_fetch_add(&busy_back, 1);
	return NULL;
}

static double seconds(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int busy(pid_t daemon)
{
	printf("-- SIGTERM while %d threads pass fds\n", BUSY_THREADS);
	busy_group = open_node("vfio/2");
	pthread_t threads[BUSY_THREADS];
	for (int i = 0; i < BUSY_THREADS; i++)
		if (pthread_create(&threads[i], NULL, pass_fds, NULL))
			die("pthread_create");
	usleep(300 * 1000);
	int pidfd = (int)syscall(SYS_pidfd_open, daemon, 0);
	if (pidfd < 0)
		die("pidfd_open %d", (int)daemon);
	EXPECT_OK(kill(daemon, SIGTERM), "kill SIGTERM after %d calls", atomic_load(&busy_calls));
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	EXPECT_EQ(poll(&p, 1, 10000), 1, "the daemon exited within 10 s");
	atomic_store(&busy_stop, 1);
	double start = seconds();
	while (atomic_load(&busy_back) < BUSY_THREADS && seconds() - start < 10)
		usleep(10 * 1000);
	EXPECT_EQ(atomic_load(&busy_back), BUSY_THREADS, "every thread's call came back");
	if (atomic_load(&busy_back) < BUSY_THREADS)
		exit(test_finish()); /* the stuck threads cannot be joined */
	for (int i = 0; i < BUSY_THREADS; i++)
		pthread_join(threads[i], NULL);
	EXPECT_EQ(mounted(node_dir), 0, "%s is no longer mounted", node_dir);
	return test_finish();
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	pid_t daemon = daemon_pid();
	if (argc > 2 && strcmp(argv[2], "busy") == 0)
		return busy(daemon);

	printf("-- a client with a container, a group, a mapping and a bound device\n");
	int group;
	int container = open_type1("1", &group);
	char *mem = alloc_memory(0x10000);
	EXPECT_OK(map_dma(container, mem, 0, 0x10000), "MAP_DMA");
	int iommufd = open_node("iommu");
	int device = open_node("vfio/devices/vfio1");
	EXPECT_OK(bind_iommufd(device, iommufd), "BIND_IOMMUFD");

	printf("-- SIGTERM to the daemon (pid %d)\n", (int)daemon);
	int pidfd = (int)syscall(SYS_pidfd_open, daemon, 0);
	if (pidfd < 0)
		die("pidfd_open %d", (int)daemon);
	EXPECT_OK(kill(daemon, SIGTERM), "kill SIGTERM");
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	EXPECT_EQ(poll(&p, 1, 10000), 1, "the daemon exited within 10 s");

	printf("-- the files the client still holds\n");
	signal(SIGALRM, hung);
	alarm(20);
	EXPECT_GONE(ioctl(container, VFIO_GET_API_VERSION), "GET_API_VERSION on the container");
	EXPECT_GONE(map_dma(container, mem, 0x10000, 0x10000), "MAP_DMA on the container");
	struct vfio_group_status status = {.argsz = sizeof(status)};
	EXPECT_GONE(ioctl(group, VFIO_GROUP_GET_STATUS, &status), "GET_STATUS on the group");
	struct iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
	EXPECT_GONE(ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc), "IOAS_ALLOC on the iommufd");
	char buf[4];
	EXPECT_GONE(pread(device, buf, sizeof(buf), 7LL << 40), "pread on the device");
	/* close() reports the FLUSH that could not be delivered (ENOTCONN) but closes the fd. */
	const int fds[] = {container, group, iommufd, device};
	for (unsigned i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		errno = 0;
		int r = close(fds[i]);
		note("close(%d): %s", fds[i], r == 0 ? "0" : strerror(errno));
		EXPECT_ERRNO(EBADF, fcntl(fds[i], F_GETFD), "fd %d is closed", fds[i]);
	}
	alarm(0);

	EXPECT_EQ(mounted(node_dir), 0, "%s is no longer mounted", node_dir);
	int fd;
	EXPECT_ERRNO(ENOENT, fd = try_open_node("vfio/vfio"), "open of a node after the exit");
	return test_finish();
}
