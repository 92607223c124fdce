/* W8's traffic: N UDP datagrams of SIZE bytes to ADDR:PORT, 64 per sendmmsg(2).
 *
 *   udpflood ADDR PORT N SIZE
 *
 * Prints one JSON line: the datagrams sent and the nanoseconds it took. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

int main(int argc, char **argv)
{
	struct sockaddr_in to = { .sin_family = AF_INET };
	struct mmsghdr msgs[BATCH];
	struct iovec iov;
	static char payload[1500];
	struct timespec t0, t1;
	long n, sent = 0;
	int fd, size, i;

	if (argc != 5) {
		fprintf(stderr, "usage: udpflood ADDR PORT N SIZE\n");
		return 2;
	}
	inet_pton(AF_INET, argv[1], &to.sin_addr);
	to.sin_port = htons(atoi(argv[2]));
	n = atol(argv[3]);
	size = atoi(argv[4]);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || size < 0 || size > (int)sizeof(payload)) {
		perror("udpflood");
		return 1;
	}
	iov.iov_base = payload;
	iov.iov_len = size;
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_name = &to;
		msgs[i].msg_hdr.msg_namelen = sizeof(to);
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (sent < n) {
		int want = n - sent < BATCH ? n - sent : BATCH;
		int r = sendmmsg(fd, msgs, want, 0);
		if (r < 0) {
			perror("sendmmsg");
			return 1;
		}
		sent += r;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("{\"sent\": %ld, \"ns\": %ld}\n", sent,
	       (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec));
	return 0;
}
