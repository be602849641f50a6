/*
 * fd arguments through the real kernel path: VFIO_GROUP_SET_CONTAINER and
 * VFIO_DEVICE_BIND_IOMMUFD given the wrong kind of fd, a closed fd, or a file that is not one of
 * this daemon's nodes. Linux answers EBADF for a number that is no open file and EBADFD for an
 * open file of the wrong kind (spec §2.2, §5.10).
 *
 * The daemon resolves an fd with pidfd_getfd and must prove the file is one of its own nodes
 * before it does anything with it: an unrelated file must never receive an ioctl from it. The
 * unrelated file here is a node of a SECOND daemon (run_with_daemon.sh --second-daemon), which
 * logs every ioctl it receives (--log-level debug) and, at info level, every refused private
 * identify request; its log must show nothing from the first daemon.
 *
 *   bad_fds NODE_DIR      ($VFIO_EMU_DEV2 and $VFIO_EMU_DAEMON2_LOG name the second daemon)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"

/* vfio-emud's private identify ioctl (core/uapi/vfio_emu.h): only the daemon may use it. */
#define VFIO_EMU_IDENTIFY _IO(VFIO_TYPE, 0x7f)

static int set_container(int group, int fd)
{
	return ioctl(group, VFIO_GROUP_SET_CONTAINER, &fd);
}

/* An fd number that is certainly not open: one that was open a moment ago. */
static int closed_fd(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open /dev/null");
	close(fd);
	return fd;
}

static void wrong_kinds(void)
{
	printf("-- fds of the wrong kind, closed fds, non-VFIO files\n");
	int container = open_node("vfio/vfio");
	int group = open_node("vfio/1");
	int other_group = open_node("vfio/2");
	int device = open_node("vfio/devices/vfio3");
	int iommufd = open_node("iommu");

	EXPECT_ERRNO(EBADFD, set_container(group, group), "SET_CONTAINER with the group's own fd");
	EXPECT_ERRNO(EBADFD, set_container(group, other_group), "SET_CONTAINER with a group fd");
	EXPECT_ERRNO(EBADFD, set_container(group, device), "SET_CONTAINER with a device cdev fd");
	EXPECT_ERRNO(EBADF, set_container(group, closed_fd()), "SET_CONTAINER with a closed fd");
	EXPECT_ERRNO(EBADF, set_container(group, -1), "SET_CONTAINER with fd -1");
	EXPECT_ERRNO(EBADF, set_container(group, 1000000), "SET_CONTAINER with fd 1000000");

	int efd = eventfd(0, EFD_CLOEXEC);
	int pipefd[2];
	int socks[2];
	if (efd < 0 || pipe2(pipefd, O_CLOEXEC) || socketpair(AF_UNIX, SOCK_STREAM, 0, socks))
		die("eventfd/pipe/socketpair");
	int regular = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (regular < 0)
		die("open /proc/self/status");
	EXPECT_ERRNO(EBADFD, set_container(group, efd), "SET_CONTAINER with an eventfd");
	EXPECT_ERRNO(EBADFD, set_container(group, pipefd[0]), "SET_CONTAINER with a pipe");
	EXPECT_ERRNO(EBADFD, set_container(group, socks[0]), "SET_CONTAINER with a socket");
	EXPECT_ERRNO(EBADFD, set_container(group, regular), "SET_CONTAINER with a /proc file");

	EXPECT_ERRNO(EBADFD, bind_iommufd(device, container), "BIND_IOMMUFD with a container fd");
	EXPECT_ERRNO(EBADFD, bind_iommufd(device, group), "BIND_IOMMUFD with a group fd");
	EXPECT_ERRNO(EBADFD, bind_iommufd(device, device), "BIND_IOMMUFD with its own fd");
	EXPECT_ERRNO(EBADFD, bind_iommufd(device, efd), "BIND_IOMMUFD with an eventfd");
	EXPECT_ERRNO(EBADFD, bind_iommufd(device, pipefd[1]), "BIND_IOMMUFD with a pipe");
	EXPECT_ERRNO(EBADF, bind_iommufd(device, closed_fd()), "BIND_IOMMUFD with a closed fd");

	/* The state is untouched: the right fds work now, also under another number (dup). */
	struct vfio_group_status status = {.argsz = sizeof(status)};
	EXPECT_OK(ioctl(group, VFIO_GROUP_GET_STATUS, &status), "GET_STATUS");
	EXPECT_EQ(status.flags, VFIO_GROUP_FLAGS_VIABLE, "group flags after the failed calls");
	int container_dup = dup(container);
	EXPECT_OK(set_container(group, container_dup), "SET_CONTAINER with a dup of the container");
	EXPECT_OK(set_container(other_group, container), "SET_CONTAINER of a second group");
	EXPECT_OK(ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), "SET_IOMMU");
	EXPECT_OK(bind_iommufd(device, iommufd), "BIND_IOMMUFD with an iommufd");

	/* An iommufd is the other thing a group may join (the VFIO compatibility layer). */
	close(device); /* group 4's device: unbinds it, and group 4 may be opened again */
	int group4 = open_node("vfio/4");
	int iommufd2 = open_node("iommu");
	EXPECT_OK(set_container(group4, iommufd2), "SET_CONTAINER with an iommufd");
	EXPECT_OK(ioctl(group4, VFIO_GROUP_UNSET_CONTAINER), "UNSET_CONTAINER");

	close(efd);
	close(pipefd[0]);
	close(pipefd[1]);
	close(socks[0]);
	close(socks[1]);
	close(regular);
	close(group4);
	close(iommufd2);
	close(container_dup);
	close(group);
	close(other_group);
	close(container);
	close(iommufd);
}

/* The log lines of the second daemon, read after the fact. */
struct log_lines {
	char **line;
	size_t count;
};

static struct log_lines read_log(const char *path)
{
	struct log_lines log = {NULL, 0};
	FILE *f = fopen(path, "re");
	if (f == NULL)
		die("open %s", path);
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		log.line = realloc(log.line, (log.count + 1) * sizeof(*log.line));
		log.line[log.count++] = strdup(line);
	}
	free(line);
	fclose(f);
	return log;
}

/* The index of the first line from `start` on that contains both a and b; -1 if none. */
static long find_line(const struct log_lines *log, size_t start, const char *a, const char *b)
{
	for (size_t i = start; i < log->count; i++)
		if (strstr(log->line[i], a) && (b == NULL || strstr(log->line[i], b)))
			return (long)i;
	return -1;
}

/* How many lines contain both a and b (b may be NULL); each is printed. */
static unsigned count_lines(const struct log_lines *log, const char *a, const char *b)
{
	unsigned n = 0;
	for (size_t i = 0; i < log->count; i++) {
		if (strstr(log->line[i], a) && (b == NULL || strstr(log->line[i], b))) {
			printf("     second daemon: %s", log->line[i]);
			n++;
		}
	}
	return n;
}

static void another_daemons_nodes(void)
{
	printf("-- nodes of another vfio-emud: EBADFD, and that daemon hears nothing\n");
	const char *dir2 = getenv("VFIO_EMU_DEV2");
	const char *log2 = getenv("VFIO_EMU_DAEMON2_LOG");
	if (dir2 == NULL || log2 == NULL) {
		errno = 0;
		die("VFIO_EMU_DEV2 / VFIO_EMU_DAEMON2_LOG unset (run_with_daemon.sh --second-daemon)");
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/vfio/vfio", dir2);
	int foreign_container = open(path, O_RDWR | O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/iommu", dir2);
	int foreign_iommufd = open(path, O_RDWR | O_CLOEXEC);
	snprintf(path, sizeof(path), "%s/vfio/1", dir2);
	int foreign_group = open(path, O_RDWR | O_CLOEXEC);
	if (foreign_container < 0 || foreign_iommufd < 0 || foreign_group < 0)
		die("open the second daemon's nodes in %s", dir2);

	int group = open_node("vfio/1");
	int device = open_node("vfio/devices/vfio1");

	/* Markers in the second daemon's log around the calls that must not reach it. */
	EXPECT_EQ(ioctl(foreign_container, VFIO_GET_API_VERSION), VFIO_API_VERSION,
		  "second daemon: GET_API_VERSION (start marker)");
	EXPECT_ERRNO(EBADFD, set_container(group, foreign_container),
		     "SET_CONTAINER with another daemon's container fd");
	EXPECT_ERRNO(EBADFD, set_container(group, foreign_group),
		     "SET_CONTAINER with another daemon's group fd");
	EXPECT_ERRNO(EBADFD, bind_iommufd(device, foreign_iommufd),
		     "BIND_IOMMUFD with another daemon's iommufd");
	EXPECT_EQ(ioctl(foreign_container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU), 1,
		  "second daemon: CHECK_EXTENSION (end marker)");

	/* The second daemon still works, and its group is still held by us alone. */
	int again;
	EXPECT_ERRNO(EBUSY, again = open(path, O_RDWR | O_CLOEXEC),
		     "second daemon: another open of the group we hold");
	if (again >= 0)
		close(again);

	/* Log lines name a caller as "pid N " or "pid N:". */
	char pid_text[64], daemon1_text[64], daemon1_colon[64];
	snprintf(pid_text, sizeof(pid_text), "pid %d ", (int)getpid());
	snprintf(daemon1_text, sizeof(daemon1_text), "pid %d ", (int)daemon_pid());
	snprintf(daemon1_colon, sizeof(daemon1_colon), "pid %d:", (int)daemon_pid());
	struct log_lines log = read_log(log2);
	long start = find_line(&log, 0, pid_text, "VFIO_GET_API_VERSION");
	long end = start < 0 ? -1 : find_line(&log, (size_t)start, pid_text, "VFIO_CHECK_EXTENSION");
	EXPECT_EQ(start >= 0 && end > start, 1,
		  "second daemon's debug log has both markers (it logs every ioctl)");
	long between = 0;
	for (long i = start + 1; start >= 0 && i < end; i++) {
		const char *l = log.line[i];
		if (strstr(l, "VFIO_") || strstr(l, "IOMMU_") || strstr(l, "ioctl")) {
			printf("     second daemon, between the markers: %s", l);
			between++;
		}
	}
	EXPECT_EQ(between, 0, "ioctls the second daemon received between the markers");
	EXPECT_EQ(count_lines(&log, "0x3b7f", NULL), 0,
		  "identify requests (0x3b7f) the second daemon refused");
	EXPECT_EQ(count_lines(&log, daemon1_text, NULL) + count_lines(&log, daemon1_colon, NULL), 0,
		  "second daemon's log lines naming the first daemon's pid");

	/*
	 * The check can see an identify request: the second daemon logs ours. To a client the
	 * number is an unknown ioctl (private to the daemon): EINVAL on a container without an
	 * IOMMU driver, as Linux answers any unknown ioctl there.
	 */
	EXPECT_ERRNO(EINVAL, ioctl(foreign_container, VFIO_EMU_IDENTIFY),
		     "VFIO_EMU_IDENTIFY from a client (an unknown ioctl to it)");
	log = read_log(log2);
	snprintf(pid_text, sizeof(pid_text), "pid %d ", (int)getpid());
	EXPECT_EQ(count_lines(&log, "0x3b7f", pid_text), 1,
		  "second daemon logged the refused identify of this client");

	close(group);
	close(device);
	close(foreign_container);
	close(foreign_iommufd);
	close(foreign_group);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	wrong_kinds();
	another_daemons_nodes();
	return test_finish();
}
