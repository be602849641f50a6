/*
 * Close and reopen at once. On Linux, close() of the last fd of a VFIO file releases it before
 * close() returns, so a program may close a group (or a device cdev) and reopen or rebind it on
 * the next line. FUSE sends RELEASE asynchronously, after close() has returned; the daemon must
 * still give the Linux answer. Each sequence is repeated many times to catch the race, first
 * with nothing else going on, then while other threads keep the daemon busy.
 *
 *   reopen NODE_DIR [group|cdev|busy|all [ROUNDS [SECONDS]]]
 *
 * Each sequence runs ROUNDS rounds (default 2000) or SECONDS seconds (default 5), whichever ends
 * first, so a loaded machine does fewer rounds instead of running into the test's time limit.
 *
 *   group  close and reopen a group (also one that was in a container with a mapping)
 *   cdev   a group and its device's cdev after each other: close one, open or bind the other
 *   busy   a group that is really held answers EBUSY at once
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

#define FULL_DMA_AVAIL 65535

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* How long one sequence may run, in seconds; its rounds stop at the count or here. */
static double sequence_budget = 5.0;

/* What one sequence's rounds came to: failures, the first failure's errno, the slowest step.
 * `rounds` is the count asked for; `done` the rounds run before the count or the time ran out. */
struct tally {
	const char *what;
	int rounds, failures, first_errno, first_round;
	double slowest;
	double began;
	int done;
};

/* Whether round `round` of a sequence is to run: within its count and its time budget. */
static int more_rounds(struct tally *t, int round)
{
	if (round == 0)
		t->began = now();
	if (round >= t->rounds || (round > 0 && now() - t->began > sequence_budget))
		return 0;
	t->done = round + 1;
	return 1;
}

/* Records one round's step, begun at `start`: a result < 0 is a failure with errno. */
static void record(struct tally *t, int round, long result, double start)
{
	int error = errno;
	double took = now() - start;
	if (took > t->slowest)
		t->slowest = took;
	if (result < 0 && t->failures++ == 0) {
		t->first_errno = error;
		t->first_round = round;
	}
}

static void report_tally(const struct tally *t)
{
	if (t->failures)
		note("first failure in round %d: %s", t->first_round, strerror(t->first_errno));
	note("slowest step: %.1f ms; %d of %d rounds in %.1f s", t->slowest * 1e3, t->done,
	     t->rounds, now() - t->began);
	EXPECT_EQ(t->failures, 0, "%s: rounds failed of %d", t->what, t->done);
}

/* BIND (or, for a round's setup, bind_iommufd_settled) to a new iommufd, which the bound
 * device keeps alive. */
static int bind_to_new_iommufd(int device, int (*bind)(int, int))
{
	int iommufd = open_node("iommu");
	int r = bind(device, iommufd);
	int e = errno;
	close(iommufd);
	errno = e;
	return r;
}

/* The start of the cdev rounds: a bound fd of the cdev, closed. */
static void bind_and_close(const char *cdev, int round)
{
	int device = open_node(cdev);
	if (bind_to_new_iommufd(device, bind_iommufd_settled))
		die("round %d: BIND_IOMMUFD", round);
	close(device);
}

/* close(group); open(group) */
static void group_reopen(int rounds)
{
	struct tally t = {.what = "close a group, open it again at once", .rounds = rounds};
	int group = open_node("vfio/1");
	for (int i = 0; more_rounds(&t, i); i++) {
		close(group);
		double start = now();
		group = try_open_node("vfio/1");
		record(&t, i, group, start);
		if (group < 0)
			group = open_node_settled("vfio/1"); /* the next round starts from an open group */
	}
	close(group);
	report_tally(&t);
}

/* A group in a container with a mapping: close it, reopen it; it is in no container and a new
 * container starts empty. */
static void group_in_container_reopen(int rounds)
{
	struct tally t = {.what = "close a group in a container with a mapping, reopen it", .rounds = rounds};
	char *mem = alloc_memory(0x10000);
	for (int i = 0; more_rounds(&t, i); i++) {
		int group = open_node_settled("vfio/2");
		int container = open_node("vfio/vfio");
		if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) ||
		    ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
			die("round %d: SET_CONTAINER / SET_IOMMU", i);
		if (map_dma(container, mem, 0, 0x10000))
			die("MAP_DMA");
		close(group);
		close(container);
		double start = now();
		group = try_open_node("vfio/2");
		record(&t, i, group, start);
		if (group < 0)
			continue;
		struct vfio_group_status status = {.argsz = sizeof(status)};
		container = open_node("vfio/vfio");
		errno = EINVAL; /* for the checks of values below */
		start = now();
		int fresh = ioctl(group, VFIO_GROUP_GET_STATUS, &status) == 0 &&
			    status.flags == VFIO_GROUP_FLAGS_VIABLE &&
			    ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) == 0 &&
			    ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0 &&
			    dma_avail(container) == FULL_DMA_AVAIL;
		record(&t, i, fresh ? 0 : -1, start);
		close(group);
		close(container);
	}
	report_tally(&t);
}

/* close(group); BIND_IOMMUFD of its device: refused (EBUSY) only while the group is open. */
static void group_close_then_bind(int rounds)
{
	struct tally t = {.what = "close a group, bind its device's cdev at once", .rounds = rounds};
	for (int i = 0; more_rounds(&t, i); i++) {
		int group = open_node_settled("vfio/1");
		int device = open_node("vfio/devices/vfio0");
		if (bind_to_new_iommufd(device, bind_iommufd) == 0 || errno != EBUSY)
			die("round %d: BIND while the group is open did not fail with EBUSY", i);
		close(group);
		double start = now();
		record(&t, i, bind_to_new_iommufd(device, bind_iommufd), start);
		close(device);
	}
	report_tally(&t);
}

/* A bound cdev is closed; its group opens at once (a group is refused while a device of it is
 * bound through its cdev). */
static void cdev_close_then_group_open(int rounds)
{
	struct tally t = {.what = "close a bound cdev, open its group at once", .rounds = rounds};
	for (int i = 0; more_rounds(&t, i); i++) {
		bind_and_close("vfio/devices/vfio0", i);
		double start = now();
		int group = try_open_node("vfio/1");
		record(&t, i, group, start);
		if (group >= 0)
			close(group);
	}
	report_tally(&t);
}

/* A bound cdev fd is closed; a new fd of the same cdev binds at once (one bound fd per device). */
static void cdev_close_then_rebind(int rounds)
{
	struct tally t = {.what = "close a bound cdev, bind a new fd of it at once", .rounds = rounds};
	for (int i = 0; more_rounds(&t, i); i++) {
		bind_and_close("vfio/devices/vfio1", i);
		int device = open_node("vfio/devices/vfio1");
		double start = now();
		record(&t, i, bind_to_new_iommufd(device, bind_iommufd), start);
		close(device);
	}
	report_tally(&t);
}

/* The other side of the same bookkeeping: while someone really holds a group, another open
 * fails with EBUSY at once, even after some copy of the holder's fd was closed (a forked child
 * that exits, a dup that is closed). Such a close is a FLUSH to the daemon but no RELEASE. */
static void busy_group_answers_at_once(void)
{
	int holder = open_node_settled("vfio/2");
	double start = now();
	EXPECT_ERRNO(EBUSY, try_open_node("vfio/2"), "open of a group another fd holds");
	EXPECT_EQ(now() - start < 0.5, 1, "EBUSY within 0.5 s (took %.3f s)", now() - start);

	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0)
		_exit(0); /* closes its inherited copy of the group fd on the way out */
	wait_child(pid);
	start = now();
	EXPECT_ERRNO(EBUSY, try_open_node("vfio/2"),
		     "open of the group after a forked child closed its copy of the fd");
	EXPECT_EQ(now() - start < 0.5, 1, "EBUSY within 0.5 s (took %.3f s)", now() - start);

	close(dup(holder));
	start = now();
	EXPECT_ERRNO(EBUSY, try_open_node("vfio/2"), "open of the group after close(dup(fd))");
	EXPECT_EQ(now() - start < 0.5, 1, "EBUSY within 0.5 s (took %.3f s)", now() - start);
	close(holder);
}

/* Other threads open and close containers without pause: their RELEASEs, which FUSE sends in
 * the background, queue up in the kernel, so a RELEASE of ours may arrive well after close()
 * has returned. A program with other threads does this to the daemon all the time. */
#define CHURN_THREADS 8
static volatile int churn_stop;

static void *churn(void *arg)
{
	(void)arg;
	while (!churn_stop) {
		int fd = try_open_node("vfio/vfio");
		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

/* The sequences of one kind, quiet and then with churn. */
static void run_rounds(void (*const *sequences)(int), int rounds)
{
	printf("-- %d rounds or %.0f s each, nothing else going on\n", rounds, sequence_budget);
	for (int i = 0; sequences[i] != NULL; i++)
		sequences[i](rounds);

	printf("-- %d rounds or %.0f s each, while %d threads open and close containers\n", rounds,
	       sequence_budget, CHURN_THREADS);
	pthread_t threads[CHURN_THREADS];
	churn_stop = 0;
	for (int i = 0; i < CHURN_THREADS; i++)
		if (pthread_create(&threads[i], NULL, churn, NULL))
			die("pthread_create");
	for (int i = 0; sequences[i] != NULL; i++)
		sequences[i](rounds);
	churn_stop = 1;
	for (int i = 0; i < CHURN_THREADS; i++)
		pthread_join(threads[i], NULL);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	const char *which = argc > 2 ? argv[2] : "all";
	int rounds = argc > 3 ? atoi(argv[3]) : 2000;
	if (argc > 4)
		sequence_budget = atof(argv[4]);
	int all = strcmp(which, "all") == 0;
	if (!all && strcmp(which, "group") && strcmp(which, "cdev") && strcmp(which, "busy"))
		die("which sequences: group, cdev, busy or all, not '%s'", which);
	static void (*const group_sequences[])(int) = {group_reopen, group_in_container_reopen,
						       NULL};
	static void (*const cdev_sequences[])(int) = {
		group_close_then_bind, cdev_close_then_group_open, cdev_close_then_rebind, NULL};
	if (all || strcmp(which, "busy") == 0) {
		printf("-- a busy group\n");
		busy_group_answers_at_once();
	}
	if (all || strcmp(which, "group") == 0)
		run_rounds(group_sequences, rounds);
	if (all || strcmp(which, "cdev") == 0)
		run_rounds(cdev_sequences, rounds);
	return test_finish();
}
