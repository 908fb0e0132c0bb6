/*
 * ptmeasure: the measurement program of tools/realkernel (issue 18). It runs as /init of an
 * initramfs on a real i386 Linux kernel under QEMU and measures what the simulator models:
 * a parent maps a shared anonymous region, writes every page, then forks children that each
 * read and write every page and pause; after chosen numbers of children it prints the
 * kernel's own accounting (/proc/meminfo, /proc/zoneinfo, /proc/slabinfo, each child's VmPTE)
 * and the OOM kills the kernel logged, as one JSON object per line prefixed "HPJSON ".
 *
 * Parameters come from the kernel command line (unknown key=value options reach init as
 * environment): HP_REGION_MB (region size, MB), HP_MAX (most children), HP_DUMP_EVERY
 * (a full dump every this many children, besides powers of two), HP_LABEL (free text).
 * The program stops at HP_MAX children or at the first child the kernel kills, prints a
 * final dump and leaves QEMU through isa-debug-exit (port 0xf4): status 0 -> exit code 1.
 *
 * Written for this project (MIT OR Apache-2.0); built with gcc -m32 -static.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define MAXKIDS 8192

static pid_t kids[MAXKIDS];
static int nkids;         /* children forked and ready */
static int oom_kills;     /* OOM kills read from /dev/kmsg so far */
static int kmsg_fd = -1;
static char buf[1 << 20]; /* one /proc file */

static long env_long(const char *name, long dflt) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 0) : dflt;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Read a whole file into buf; its length (0 if unreadable). */
static size_t slurp(const char *path) {
    int fd = open(path, O_RDONLY);
    size_t n = 0;
    if (fd < 0)
        return 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    return n;
}

/* Print s as a JSON string. */
static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void json_file(const char *key, const char *path) {
    printf(",\"%s\":", key);
    slurp(path);
    json_str(buf);
}

/* Count new "Killed process" lines in the kernel log; keep them for the dump. */
static char oom_lines[1 << 16];
static size_t oom_len;
static void read_kmsg(void) {
    char rec[2048];
    if (kmsg_fd < 0)
        return;
    for (;;) {
        ssize_t r = read(kmsg_fd, rec, sizeof rec - 1);
        if (r < 0 && errno == EPIPE)
            continue; /* overwritten records: go on */
        if (r <= 0)
            break;
        rec[r] = 0;
        if (strstr(rec, "Killed process") || strstr(rec, "invoked oom-killer")) {
            if (strstr(rec, "Killed process"))
                oom_kills++;
            size_t l = strlen(rec);
            if (oom_len + l + 1 < sizeof oom_lines) {
                memcpy(oom_lines + oom_len, rec, l);
                oom_len += l;
            }
        }
    }
}

/* The boot log so far (every record /dev/kmsg still holds), as one string: its "Memory:"
 * line gives the kernel's own breakdown of reserved memory. */
static char boot_log[1 << 18];
static void read_boot_log(void) {
    char rec[2048];
    size_t n = 0;
    if (kmsg_fd < 0)
        return;
    for (;;) {
        ssize_t r = read(kmsg_fd, rec, sizeof rec - 1);
        if (r < 0 && errno == EPIPE)
            continue;
        if (r <= 0)
            break;
        rec[r] = 0;
        /* "prio,seq,usec,flags;text\n": keep the text */
        char *t = strchr(rec, ';');
        t = t ? t + 1 : rec;
        size_t l = strlen(t);
        if (n + l + 1 < sizeof boot_log) {
            memcpy(boot_log + n, t, l);
            n += l;
        }
    }
    boot_log[n] = 0;
}

static void dump(const char *phase, int full) {
    read_kmsg();
    printf("HPJSON {\"phase\":\"%s\",\"children\":%d,\"oom_kills\":%d,\"t\":%.3f", phase, nkids,
           oom_kills, now());
    json_file("meminfo", "/proc/meminfo");
    if (full) {
        json_file("zoneinfo", "/proc/zoneinfo");
        json_file("slabinfo", "/proc/slabinfo");
        json_file("buddyinfo", "/proc/buddyinfo");
        json_file("vmstat", "/proc/vmstat");
        /* every child's VmPTE, in kB */
        printf(",\"vmpte_kb\":[");
        for (int i = 0; i < nkids; i++) {
            char p[64];
            long v = -1;
            snprintf(p, sizeof p, "/proc/%d/status", kids[i]);
            if (slurp(p)) {
                char *s = strstr(buf, "VmPTE:");
                if (s)
                    v = strtol(s + 6, NULL, 10);
            }
            printf("%s%ld", i ? "," : "", v);
        }
        printf("]");
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/status", getpid());
        json_file("parent_status", p);
        oom_lines[oom_len] = 0;
        printf(",\"oom_log\":");
        json_str(oom_lines);
    }
    printf("}\n");
    fflush(stdout);
}

static void leave(int code) {
    fflush(stdout);
    sync();
    if (ioperm(0xf4, 1, 1) == 0)
        outb((unsigned char)code, 0xf4);
    /* no debug-exit device: power off is not possible from here; spin */
    for (;;)
        pause();
}

static void touch_all(volatile unsigned char *r, unsigned long pages) {
    for (unsigned long i = 0; i < pages; i++) {
        unsigned char v = r[i * PAGE];
        r[i * PAGE] = (unsigned char)(v + 1);
    }
}

int main(void) {
    mkdir("/proc", 0555);
    mkdir("/dev", 0755);
    mount("proc", "/proc", "proc", 0, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    kmsg_fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);

    long region_mb = env_long("HP_REGION_MB", 1024);
    long max = env_long("HP_MAX", 64);
    long every = env_long("HP_DUMP_EVERY", 25);
    const char *label = getenv("HP_LABEL") ? getenv("HP_LABEL") : "";
    if (max > MAXKIDS)
        max = MAXKIDS;

    slurp("/proc/cmdline");
    printf("HPJSON {\"phase\":\"start\",\"label\":");
    json_str(label);
    printf(",\"region_mb\":%ld,\"max\":%ld,\"cmdline\":", region_mb, max);
    json_str(buf);
    read_boot_log();
    printf(",\"dmesg\":");
    json_str(boot_log);
    slurp("/proc/version");
    printf(",\"version\":");
    json_str(buf);
    printf("}\n");
    dump("boot", 1);

    unsigned long pages = (unsigned long)region_mb * 1024 * 1024 / PAGE;
    volatile unsigned char *r = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) {
        printf("HPJSON {\"phase\":\"error\",\"what\":\"mmap\",\"errno\":%d}\n", errno);
        leave(3);
    }
    touch_all(r, pages);
    dump("parent", 1);

    int ready[2];
    if (pipe(ready) < 0)
        leave(3);
    const char *stop = "max";
    while (nkids < max) {
        pid_t c = fork();
        if (c < 0) {
            stop = "fork";
            break;
        }
        if (c == 0) {
            close(ready[0]);
            touch_all(r, pages);
            char b = 1;
            if (write(ready[1], &b, 1) != 1)
                _exit(1);
            for (;;)
                pause();
        }
        /* wait for the child to be ready, or for it (or another) to die */
        int died = 0;
        for (;;) {
            struct pollfd pf = {ready[0], POLLIN, 0};
            if (poll(&pf, 1, 1000) == 1) {
                char b;
                if (read(ready[0], &b, 1) == 1)
                    break;
            }
            int st;
            pid_t w = waitpid(-1, &st, WNOHANG);
            if (w > 0) {
                died = 1;
                printf("HPJSON {\"phase\":\"death\",\"pid\":%d,\"signal\":%d,\"exit\":%d,"
                       "\"children\":%d}\n",
                       w, WIFSIGNALED(st) ? WTERMSIG(st) : 0, WIFEXITED(st) ? WEXITSTATUS(st) : -1,
                       nkids);
                fflush(stdout);
                break;
            }
        }
        if (died) {
            stop = "death";
            break;
        }
        kids[nkids++] = c;
        read_kmsg();
        int pow2 = (nkids & (nkids - 1)) == 0;
        dump("step", pow2 || nkids % every == 0);
        if (oom_kills) {
            stop = "oom";
            break;
        }
    }
    /* let the kernel log and reap settle, then the final state */
    sleep(2);
    int st;
    while (waitpid(-1, &st, WNOHANG) > 0)
        ;
    printf("HPJSON {\"phase\":\"stop\",\"why\":\"%s\",\"children\":%d}\n", stop, nkids);
    dump("final", 1);
    leave(0);
    return 0;
}
