/* W1: lesson 1 in libbpf C. Load hello.bpf.o, attach, print "attached", then
 * read the trace pipe until the first "Hello, World!" and print it. */
#include "bench.h"

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	char line[4096];
	FILE *pipe;

	if (argc < 2) {
		fprintf(stderr, "usage: hello OBJ\n");
		return 2;
	}
	open_and_load(argv[1], &obj);
	load(obj);
	struct bpf_link *link = attach(obj, "hello");
	printf("attached\n");
	fflush(stdout);
	pipe = fopen("/sys/kernel/tracing/trace_pipe", "r");
	if (!pipe)
		die("trace_pipe", errno);
	while (fgets(line, sizeof(line), pipe)) {
		if (strstr(line, "Hello, World!")) {
			printf("Hello, World!\n");
			fflush(stdout);
			break;
		}
	}
	bpf_link__destroy(link);
	bpf_object__close(obj);
	return 0;
}
