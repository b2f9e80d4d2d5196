/* The exec handler's per-run reaper: a small process between the worker and
 * the command, so that nothing a job starts outlives it (systemd's
 * KillMode=control-group, for one job; docs/worker.md, "exec hygiene").
 *
 * The reaper is a child subreaper (PR_SET_CHILD_SUBREAPER): every process
 * the command starts, however it detaches (setsid, a double fork), stays
 * in the reaper's tree, and when its parent dies it becomes the reaper's
 * child. When the run ends -- the command exits, the worker asks it to stop
 * (timeout, abort, an output too large), or the worker dies -- the reaper
 * kills its children with SIGKILL, reaps them, and does it again until it
 * has no child left; a descendant that keeps forking loses every round,
 * since a killed process forks no more. Then it exits with the command's
 * own wait status (exit code, or the signal that killed it), or SIGKILL
 * when it was stopped before the command ended, so the worker reads the
 * command's outcome from the reaper's. */
#ifndef CORRAL_REAPER_H
#define CORRAL_REAPER_H

#include <sys/types.h>

/* Forks the reaper, which runs argv (execvp, no shell) with in, out and
 * err as its stdin, stdout and stderr, default signal dispositions, an
 * empty signal mask and no other fd, in the reaper's process group (so
 * kill(-pid, SIGKILL) reaches what is left should the reaper itself be
 * killed). The caller closes its copies of in, out and err. Returns the
 * reaper's pid, or -1 with errno when fork fails. The reaper starts the
 * command with posix_spawnp; when it cannot, it exits 75 (retryable: no
 * memory or processes left) or 127/126 as a shell would (not found, not
 * runnable), with the reason on err. */
pid_t corral_reaper_spawn(char *const *argv, int in, int out, int err);

/* Asks the reaper to end the run (SIGTERM): it kills and reaps every
 * descendant, then exits. No effect on a reaper that has exited. */
void corral_reaper_stop(pid_t reaper);

#endif
