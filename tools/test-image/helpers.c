/*
 * Two tiny helpers for the devstack-rs test image, one binary chosen by
 * argv[0] (busybox has neither):
 *   sudo [-i|-s|-n|-E|-H|-u root] [CMD ARGS...]
 *       installed setuid root; lets root and the "cirros" user (uid 1000)
 *       run CMD as root without a password, like cirros's sudoers.
 *   seed-rng FILE
 *       mixes FILE, the time and the boot id into the kernel pool and
 *       credits it (RNDADDENTROPY), so that getrandom() does not block for
 *       minutes under TCG. A test image only: the seed is not secret.
 */
#include <fcntl.h>
#include <grp.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static int seed_rng(const char *file)
{
	struct {
		int entropy_count;
		int buf_size;
		unsigned char buf[512];
	} e;
	struct timespec ts;
	int fd, n = 0;

	memset(&e, 0, sizeof(e));
	fd = open(file, O_RDONLY);
	if (fd >= 0) {
		n = read(fd, e.buf, 256);
		close(fd);
	}
	if (n < 0)
		n = 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	memcpy(e.buf + n, &ts, sizeof(ts));
	n += sizeof(ts);
	fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY);
	if (fd >= 0) {
		int m = read(fd, e.buf + n, 64);
		if (m > 0)
			n += m;
		close(fd);
	}
	e.buf_size = n;
	e.entropy_count = 256 * 8 < n * 8 ? 256 * 8 : n * 8;
	fd = open("/dev/urandom", O_WRONLY);
	if (fd < 0 || ioctl(fd, RNDADDENTROPY, &e) < 0) {
		perror("seed-rng");
		return 1;
	}
	close(fd);
	return 0;
}

static int sudo(int argc, char **argv)
{
	uid_t uid = getuid();
	int i = 1, shell = 0;

	if (uid != 0 && uid != 1000) {
		fprintf(stderr, "sudo: only root and cirros may use sudo\n");
		return 1;
	}
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-i") || !strcmp(argv[i], "-s"))
			shell = 1;
		else if (!strcmp(argv[i], "-u") && i + 1 < argc)
			i++; /* only root is supported */
		else if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
	}
	if (setgroups(0, NULL) || setgid(0) || setuid(0)) {
		perror("sudo");
		return 1;
	}
	/* like sudo's secure_path: root's commands are in the sbin dirs */
	setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
	setenv("HOME", "/root", 1);
	setenv("USER", "root", 1);
	setenv("LOGNAME", "root", 1);
	if (i >= argc || shell) {
		if (i < argc) {
			/* sudo -s CMD: run CMD through the shell */
			execl("/bin/sh", "sh", "-c", argv[i], (char *)NULL);
		}
		execl("/bin/sh", "-sh", (char *)NULL);
	} else {
		execvp(argv[i], argv + i);
	}
	perror("sudo");
	return 127;
}

int main(int argc, char **argv)
{
	const char *me = strrchr(argv[0], '/');

	me = me ? me + 1 : argv[0];
	if (!strcmp(me, "seed-rng"))
		return seed_rng(argc > 1 ? argv[1] : "/etc/random-seed");
	return sudo(argc, argv);
}
