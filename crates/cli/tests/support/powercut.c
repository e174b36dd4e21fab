/*
 * powercut: an LD_PRELOAD shim that models a disk which loses every write not yet synced, and
 * that can fail writes and syncs on demand. The power-loss test (tests/power_loss.rs) compiles
 * it with `cc -shared -fPIC -O1 -o libpowercut.so powercut.c -ldl` and runs `suanli` under it.
 *
 * Files directly in POWERCUT_DIR are watched. Their durable state is kept in POWERCUT_SHADOW:
 *   data/NAME    the file's content as of its last successful fsync/fdatasync (any process, any
 *                descriptor: a sync flushes the inode, so the whole current content is copied);
 *   linked/NAME  present when the file's directory entry is durable: set for every file in the
 *                directory when the directory itself is synced, removed for files gone by then.
 * A power cut is the test's job: it kills the process with SIGKILL and replaces every file in
 * POWERCUT_DIR by its durable image (a linked file without data/NAME comes back empty; a file
 * never linked disappears). The copy into data/NAME is in place, page by page, so a process
 * killed in the middle of a sync leaves some of the unsynced pages durable and others not, as a
 * real disk may.
 *
 * Faults: when POWERCUT_CONTROL names a file and that file exists, it holds one line
 * "OP ERRNO [COUNT [SUFFIX]]", OP being `write` (write, pwrite, pwrite64, writev, pwritev,
 * ftruncate), `fsync`, `fdatasync` or `sync` (both), ERRNO `ENOSPC` or `EIO`. Those calls on
 * watched files (whose name ends in SUFFIX, if given) then fail with that errno; after COUNT
 * failures (0: no limit) the shim deletes the control file, so the fault clears. Each failure appends a line to POWERCUT_CONTROL.tripped, so the test
 * knows when the fault hit. A failed sync leaves the durable image as it was.
 *
 * POWERCUT_SYNC_DELAY_US adds that many microseconds to every sync of a watched file, as a
 * real disk takes time, widening the window in which an acknowledgement that ran ahead of its
 * sync would be lost.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define PAGE 4096

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

static const char *watched;  /* POWERCUT_DIR */
static const char *shadow;   /* POWERCUT_SHADOW */
static const char *control;  /* POWERCUT_CONTROL */
static long sync_delay_us;

__attribute__((constructor)) static void powercut_init(void) {
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    watched = getenv("POWERCUT_DIR");
    shadow = getenv("POWERCUT_SHADOW");
    control = getenv("POWERCUT_CONTROL");
    const char *delay = getenv("POWERCUT_SYNC_DELAY_US");
    sync_delay_us = delay ? atol(delay) : 0;
}

/* The name of the watched file (or "." for the watched directory itself) that `fd` refers to,
 * written to `name`; 0 when `fd` is not in the watched directory. */
static int watched_name(int fd, char *name, size_t size) {
    if (!watched) return 0;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    size_t w = strlen(watched);
    if (strncmp(path, watched, w) != 0) return 0;
    if (path[w] == 0) {
        snprintf(name, size, ".");
        return 1;
    }
    if (path[w] != '/' || strchr(path + w + 1, '/')) return 0;
    /* An unlinked file: "NAME (deleted)"; its content no longer matters after a cut. */
    if (strstr(path + w + 1, " (deleted)")) return 0;
    snprintf(name, size, "%s", path + w + 1);
    return 1;
}

/* Whether a call of kind `op` ("write", "fsync" or "fdatasync") on `fd` must fail now; sets
 * errno if so. */
static int fault(const char *op, int fd) {
    if (!control) return 0;
    int saved = errno;
    char line[128] = {0};
    int c = open(control, O_RDONLY | O_CLOEXEC);
    if (c < 0) {
        errno = saved;
        return 0;
    }
    ssize_t n = read(c, line, sizeof line - 1);
    close(c);
    char kind[16] = {0}, code[16] = {0}, suffix[64] = {0};
    long count = 0;
    int fields = n > 0 ? sscanf(line, "%15s %15s %ld %63s", kind, code, &count, suffix) : 0;
    int matches = strcmp(kind, op) == 0 || (strcmp(kind, "sync") == 0 && strstr(op, "sync"));
    if (fields < 2 || !matches) {
        errno = saved;
        return 0;
    }
    char name[PATH_MAX];
    size_t len = 0, want = strlen(suffix);
    if (!watched_name(fd, name, sizeof name) || strcmp(name, ".") == 0 ||
        (len = strlen(name)) < want || strcmp(name + len - want, suffix) != 0) {
        errno = saved;
        return 0;
    }
    int err = strcmp(code, "ENOSPC") == 0 ? ENOSPC : EIO;
    char tripped[PATH_MAX];
    snprintf(tripped, sizeof tripped, "%s.tripped", control);
    int t = open(tripped, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    long failures = 1;
    if (t >= 0) {
        char entry[PATH_MAX + 64];
        int len = snprintf(entry, sizeof entry, "%s %s %s\n", op, code, name);
        real_write(t, entry, (size_t)len);
        close(t);
        /* One line per failure, across processes: the file's line count is the failure count. */
        failures = 0;
        int r = open(tripped, O_RDONLY | O_CLOEXEC);
        char buf[4096];
        ssize_t k;
        while (r >= 0 && (k = read(r, buf, sizeof buf)) > 0)
            for (ssize_t i = 0; i < k; i++) failures += buf[i] == '\n';
        if (r >= 0) close(r);
    }
    if (count > 0 && failures >= count) unlink(control);
    errno = err;
    return 1;
}

static void shadow_path(char *out, size_t size, const char *sub, const char *name) {
    snprintf(out, size, "%s/%s/%s", shadow, sub, name);
}

/* Copies the current content of `fd` (a watched file called `name`) into data/NAME, writing only
 * the pages that differ, then sets its length. */
static void snapshot(int fd, const char *name) {
    char link[64], dst[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    int src = open(link, O_RDONLY | O_CLOEXEC);
    if (src < 0) return;
    shadow_path(dst, sizeof dst, "data", name);
    int out = open(dst, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (out < 0) {
        close(src);
        return;
    }
    char *a = malloc(64 * PAGE), *b = malloc(64 * PAGE);
    off_t at = 0;
    if (!a || !b) {
        free(a);
        free(b);
        close(out);
        close(src);
        return;
    }
    for (;;) {
        ssize_t n = pread(src, a, 64 * PAGE, at);
        if (n <= 0) break;
        ssize_t m = pread(out, b, (size_t)n, at);
        for (ssize_t p = 0; p < n; p += PAGE) {
            size_t len = (size_t)(n - p < PAGE ? n - p : PAGE);
            if (m < p + (ssize_t)len || memcmp(a + p, b + p, len) != 0)
                real_pwrite(out, a + p, len, at + p);
        }
        at += n;
    }
    real_ftruncate(out, at);
    free(a);
    free(b);
    close(out);
    close(src);
}

/* The watched directory was synced: the entries it holds now are durable, the ones gone are
 * gone for good. */
static void link_entries(void) {
    char dir[PATH_MAX], marker[PATH_MAX];
    DIR *d = opendir(watched);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        shadow_path(marker, sizeof marker, "linked", e->d_name);
        int m = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (m >= 0) close(m);
    }
    closedir(d);
    snprintf(dir, sizeof dir, "%s/linked", shadow);
    d = opendir(dir);
    if (!d) return;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char present[PATH_MAX];
        snprintf(present, sizeof present, "%s/%s", watched, e->d_name);
        if (access(present, F_OK) != 0) {
            shadow_path(marker, sizeof marker, "linked", e->d_name);
            unlink(marker);
            shadow_path(marker, sizeof marker, "data", e->d_name);
            unlink(marker);
        }
    }
    closedir(d);
}

static int sync_common(int fd, int (*real)(int), const char *op) {
    char name[PATH_MAX];
    if (!watched_name(fd, name, sizeof name)) return real(fd);
    if (fault(op, fd)) return -1;
    if (sync_delay_us > 0) usleep((useconds_t)sync_delay_us);
    if (!shadow) return real(fd);
    /* One sync at a time, across threads and processes, so durable images never go back. */
    char lock[PATH_MAX];
    snprintf(lock, sizeof lock, "%s/.lock", shadow);
    int l = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (l >= 0) flock(l, LOCK_EX);
    int r = real(fd);
    int saved = errno;
    if (r == 0) {
        if (strcmp(name, ".") == 0)
            link_entries();
        else
            snapshot(fd, name);
    }
    if (l >= 0) close(l);
    errno = saved;
    return r;
}

int fsync(int fd) { return sync_common(fd, real_fsync, "fsync"); }
int fdatasync(int fd) { return sync_common(fd, real_fdatasync, "fdatasync"); }

ssize_t write(int fd, const void *buf, size_t n) {
    if (fault("write", fd)) return -1;
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t at) {
    if (fault("write", fd)) return -1;
    return real_pwrite(fd, buf, n, at);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t at) {
    if (fault("write", fd)) return -1;
    return real_pwrite64(fd, buf, n, at);
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    if (fault("write", fd)) return -1;
    return real_writev(fd, iov, count);
}

ssize_t pwritev(int fd, const struct iovec *iov, int count, off_t at) {
    if (fault("write", fd)) return -1;
    return real_pwritev(fd, iov, count, at);
}

int ftruncate(int fd, off_t len) {
    if (fault("write", fd)) return -1;
    return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off64_t len) {
    if (fault("write", fd)) return -1;
    return real_ftruncate64(fd, len);
}
