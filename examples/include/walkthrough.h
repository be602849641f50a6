/*
 * What the example programs share besides the uAPI: how a failed step is reported, and how a
 * node under the node directory is opened. Each example prints what it does; a failure names the
 * step (usually the ioctl) and the error, and exits 1.
 */
#ifndef VFIO_EMU_WALKTHROUGH_H
#define VFIO_EMU_WALKTHROUGH_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The name failures are reported under; main() sets it. */
static const char *walkthrough_name = "example";

/* "NAME: WHAT: strerror(errno)" on stderr, then exit(1). */
static inline _Noreturn void fail(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", walkthrough_name, what, strerror(errno));
	exit(1);
}

/* Opens DIR/NAME read-write (e.g. "/dev" + "vfio/vfio"), says so, and returns the fd. */
static inline int open_node(const char *dir, const char *name)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		fail(path);
	printf("open %s: fd %d\n", path, fd);
	return fd;
}

#endif
