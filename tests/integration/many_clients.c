/*
 * Many short-lived clients, one after another: the daemon must keep nothing per dead client.
 *
 * Each client is a new process with two threads. One puts group 1 in a type1 container, the
 * other maps some of its memory (the daemon then looks up both threads' thread group and the
 * process's memory map), and the process exits without cleaning up. First the daemon's
 * RLIMIT_NOFILE is lowered to 128 (prlimit on its pid), as for a daemon under a tight limit: one
 * fd kept per dead client would exhaust it within the run, after which the daemon could no longer
 * fetch fd arguments (SET_CONTAINER: EBADF) nor check a caller's memory (MAP_DMA: EFAULT for
 * memory that is mapped). Checked: every client succeeds, the daemon's fd count comes back to
 * within 4 of what it was before, and a last client still gets SET_CONTAINER and MAP_DMA right.
 *
 *   many_clients NODE_DIR [CLIENTS]
 */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define DAEMON_NOFILE 128
#define MAP_SIZE 0x4000UL

static int count_fds(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (d == NULL)
		die("opendir %s", path);
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

struct mapper {
	int container;
	int result;
};

static void *map_from_another_thread(void *arg)
{
	struct mapper *m = arg;
	char *mem = alloc_memory(MAP_SIZE);
	m->result = map_dma(m->container, mem, 0, MAP_SIZE);
	return NULL;
}

/* One client: exits 0 if everything worked, else the step that failed. */
static int client(void)
{
	int container = open_node("vfio/vfio");
	int group = open_node_settled("vfio/1"); /* the previous client's release may trail */
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container))
		return 2;
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		return 3;
	struct mapper m = {.container = container, .result = -1};
	pthread_t thread;
	if (pthread_create(&thread, NULL, map_from_another_thread, &m) ||
	    pthread_join(thread, NULL))
		return 4;
	return m.result == 0 ? 0 : 5;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	int clients = argc > 2 ? atoi(argv[2]) : 400;
	pid_t daemon = daemon_pid();
	struct rlimit lim;
	if (prlimit(daemon, RLIMIT_NOFILE, NULL, &lim))
		die("prlimit (get) of the daemon");
	lim.rlim_cur = DAEMON_NOFILE;
	if (prlimit(daemon, RLIMIT_NOFILE, &lim, NULL))
		die("prlimit (set) of the daemon");
	int before = count_fds(daemon);
	printf("-- %d clients one after another; the daemon has %d fds, RLIMIT_NOFILE %d\n", clients,
	       before, DAEMON_NOFILE);

	int failed = 0, first_failure = -1, first_status = 0;
	for (int i = 0; i < clients; i++) {
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0)
			_exit(client());
		int status = wait_child(pid);
		if (status != 0 && failed++ == 0) {
			first_failure = i;
			first_status = status;
		}
	}
	EXPECT_EQ(failed, 0, "clients that failed (the first: #%d, at step %d)", first_failure,
		  first_status);

	/* The last client's files are released, and its entries dropped, after it exited: give the
	 * daemon a moment. It keeps two fds of its own for watching (cuse/exit_watcher.h). */
	int after = count_fds(daemon);
	for (double start = now(); after > before + 4 && now() - start < 5;) {
		usleep(50000);
		after = count_fds(daemon);
	}
	note("the daemon's fds: %d before, %d after", before, after);
	EXPECT_EQ(after <= before + 4, 1, "the daemon's fd count after %d clients (%d -> %d)",
		  clients, before, after);

	int group;
	int container = open_type1("1", &group); /* dies if SET_CONTAINER fails */
	char *mem = alloc_memory(2 * MAP_SIZE);
	if (munmap(mem + MAP_SIZE, MAP_SIZE))
		die("munmap");
	EXPECT_OK(map_dma(container, mem, 0, MAP_SIZE), "MAP_DMA of mapped memory");
	EXPECT_ERRNO(EFAULT, map_dma(container, mem + MAP_SIZE, 1 << 20, MAP_SIZE),
		     "MAP_DMA of memory that is not mapped");
	close(group);
	close(container);
	return test_finish();
}
