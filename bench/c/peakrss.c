/* peakrss FILE CPU COMMAND [ARGS...]: run COMMAND (pinned to CPU unless it is -1) and
 * write its own peak RSS in KiB to FILE when it exits, then exit as it did.
 *
 * The bench cannot read a child's peak itself: the kernel's ru_maxrss of a process
 * counts the memory it had before exec, which for a child of the bench is a copy of
 * the bench (19.6 MiB here, whatever ran). Forked from this small program instead,
 * COMMAND's ru_maxrss is its own peak (or that of a child it waited for, e.g. clang). */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t child;

static void forward(int sig) { if (child > 0) kill(child, sig); }

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: peakrss FILE CPU COMMAND [ARGS...]\n");
		return 2;
	}
	int cpu = atoi(argv[2]);
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		sched_setaffinity(0, sizeof(set), &set);
	}
	pid_t parent = getpid();
	child = fork();
	if (child < 0) {
		perror("fork");
		return 2;
	}
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);          /* the bench killed us: do not outlive it */
		if (getppid() != parent)
			_exit(2);
		execvp(argv[3], argv + 3);
		perror(argv[3]);
		_exit(127);
	}
	struct sigaction sa = { .sa_handler = forward };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	int status;
	struct rusage ru;
	while (wait4(child, &status, 0, &ru) < 0)
		;                                           /* EINTR from a forwarded signal */
	FILE *f = fopen(argv[1], "w");
	if (f) {
		fprintf(f, "%ld\n", ru.ru_maxrss);
		fclose(f);
	}
	if (WIFSIGNALED(status)) {
		signal(WTERMSIG(status), SIG_DFL);
		kill(getpid(), WTERMSIG(status));
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
