/* The exec handler's per-run reaper (reaper.h). It runs in a forked copy
 * of the worker and never returns to it: from the fork on it uses system
 * calls and fixed buffers only -- not the worker's allocator, stdio or
 * event loop -- and keeps every signal blocked, taking the ones it waits
 * for with sigwaitinfo. */
#include "reaper.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Exit code when the command cannot be started for a passing reason. */
#define EX_TEMPFAIL 75
/* How long the kill loop waits for a SIGCHLD before it looks again: a
 * killed process in uninterruptible sleep dies when its I/O ends. */
#define KILL_WAIT_NS (10 * 1000 * 1000)

static void close_from(int lowfd)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0)
        return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = lowfd; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
        close((int)fd);
}

/* fd onto to; a pipe end that already is to loses its close-on-exec. */
static int move_fd(int fd, int to)
{
    if (fd == to)
        return fcntl(fd, F_SETFD, 0);
    return dup2(fd, to) < 0 ? -1 : 0;
}

/* Starts the command with posix_spawnp (a vfork: no copy of the
 * reaper's memory): the reaper's fds 0-2, default dispositions (already
 * the reaper's), an empty mask. Exits as a shell would when it cannot. */
static pid_t start_command(char *const *argv)
{
    extern char **environ;
    posix_spawnattr_t attr;
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    pid_t cmd;
    int e = posix_spawnp(&cmd, argv[0], NULL, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    if (e == 0)
        return cmd;
    if (e == EAGAIN || e == ENOMEM) {
        dprintf(2, "cannot start the command: %s", strerror(e));
        _exit(EX_TEMPFAIL);
    }
    dprintf(2, "cannot run %s: %s", argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

/* Reaps every child that has ended, noting the command's status. 1 while
 * children remain, 0 once there is none. */
static int reap(pid_t cmd, int *status, int *done)
{
    for (;;) {
        int st;
        pid_t p = waitpid(-1, &st, WNOHANG);
        if (p > 0) {
            if (p == cmd) {
                *status = st;
                *done = 1;
            }
            continue;
        }
        if (p == 0)
            return 1;
        if (errno == EINTR)
            continue;
        return 0; /* ECHILD */
    }
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* SIGKILL to each pid of a "pid pid ..." list read from fd. */
static void kill_listed(int fd)
{
    char buf[4096];
    long pid = -1;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
        for (ssize_t i = 0; i < n; i++) {
            if (is_digit(buf[i])) {
                pid = (pid < 0 ? 0 : pid * 10) + (buf[i] - '0');
            } else if (pid > 0) {
                kill((pid_t)pid, SIGKILL);
                pid = -1;
            }
        }
    }
    if (pid > 0)
        kill((pid_t)pid, SIGKILL);
}

struct dirent64_raw {
    unsigned long long d_ino;
    long long d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Without /proc/PID/task/TID/children (a kernel without
 * CONFIG_PROC_CHILDREN): every /proc/N/stat whose parent is me. */
static void kill_children_by_scan(pid_t me)
{
    int dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return;
    char ents[8192];
    long n;
    while ((n = syscall(SYS_getdents64, dir, ents, sizeof(ents))) > 0) {
        for (long off = 0; off < n;) {
            const struct dirent64_raw *d = (const struct dirent64_raw *)(ents + off);
            off += d->d_reclen;
            if (!is_digit(d->d_name[0]))
                continue;
            char path[64], stat[512];
            snprintf(path, sizeof(path), "/proc/%s/stat", d->d_name);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            ssize_t len = read(fd, stat, sizeof(stat) - 1);
            close(fd);
            if (len <= 0)
                continue;
            stat[len] = '\0';
            /* "pid (comm) S ppid ...": comm may hold anything, so from the last ')'. */
            const char *p = strrchr(stat, ')');
            long ppid = 0;
            if (p == NULL || p[1] != ' ' || p[2] == '\0' || p[3] != ' ')
                continue;
            for (p += 4; is_digit(*p); p++)
                ppid = ppid * 10 + (*p - '0');
            if (ppid == me) {
                long pid = 0;
                for (const char *q = d->d_name; is_digit(*q); q++)
                    pid = pid * 10 + (*q - '0');
                kill((pid_t)pid, SIGKILL);
            }
        }
    }
    close(dir);
}

/* SIGKILL to every child of the reaper. Grandchildren come up a level as
 * their parents die (the reaper is their subreaper), so the caller repeats
 * until no child is left. */
static void kill_children(pid_t me)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)me, (int)me);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        kill_children_by_scan(me);
        return;
    }
    kill_listed(fd);
    close(fd);
}

/* Kills and reaps every descendant, the command included if it runs. */
static void kill_all(pid_t me, pid_t cmd, int *status, int *done)
{
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    while (reap(cmd, status, done)) {
        kill_children(me);
        struct timespec ts = {0, KILL_WAIT_NS};
        sigtimedwait(&chld, NULL, &ts);
    }
}

/* Exits with the wait status st: the same exit code, or death by the same
 * signal (without a core file). */
static void exit_as(int st)
{
    if (WIFEXITED(st))
        _exit(WEXITSTATUS(st));
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : SIGKILL;
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    signal(sig, SIG_DFL);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    kill(getpid(), sig);
    kill(getpid(), SIGKILL); /* a signal whose default is not to end the process */
    _exit(128 + sig);
}

static void reaper_main(char *const *argv, int in, int out, int err, pid_t worker)
{
    /* The worker's handlers mean nothing here, and SIGCHLD must not stay
     * ignored (that would reap children unseen). Every signal is blocked
     * (as the worker forked); the ones awaited are taken synchronously. */
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    prctl(PR_SET_NAME, "corral-reaper");
    prctl(PR_SET_PDEATHSIG, SIGHUP); /* the worker died: end the run too */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    setpgid(0, 0);
    if (move_fd(in, 0) < 0 || move_fd(out, 1) < 0 || move_fd(err, 2) < 0)
        _exit(EX_TEMPFAIL);
    /* Nothing of the worker's (Redis sockets, fd 3 to corrald, other
     * jobs' pipes) reaches the command. */
    close_from(3);
    if (getppid() != worker)
        _exit(EX_TEMPFAIL); /* the worker died before PR_SET_PDEATHSIG */
    pid_t me = getpid();
    pid_t cmd = start_command(argv);
    /* No end of the job's pipes stays here: the worker sees their EOF when
     * the command and whatever it started close them. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2)
            close(null);
    }
    sigset_t wake;
    sigemptyset(&wake);
    sigaddset(&wake, SIGCHLD);
    sigaddset(&wake, SIGTERM); /* corral_reaper_stop */
    sigaddset(&wake, SIGHUP);  /* PR_SET_PDEATHSIG */
    sigaddset(&wake, SIGINT);
    int status = 0, done = 0, stop = 0;
    while (!done && !stop) {
        int sig = sigwaitinfo(&wake, NULL);
        if (sig == SIGCHLD)
            reap(cmd, &status, &done);
        else if (sig > 0)
            stop = 1;
    }
    /* The command ended, or the run must: nothing it started stays. */
    kill_all(me, cmd, &status, &done);
    exit_as(done ? status : SIGKILL); /* SIGKILL: the wait status "killed by SIGKILL" */
}

pid_t corral_reaper_spawn(char *const *argv, int in, int out, int err)
{
    pid_t worker = getpid();
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0)
        reaper_main(argv, in, out, err, worker);
    int saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid > 0)
        setpgid(pid, pid); /* also in the reaper: whichever runs first */
    errno = saved;
    return pid;
}

void corral_reaper_stop(pid_t reaper)
{
    if (reaper > 0)
        kill(reaper, SIGTERM);
}
