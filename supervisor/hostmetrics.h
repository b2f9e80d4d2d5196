/* Host load for the scaler's CPU and memory ceilings, and worker RSS for
 * recycling, read from /proc. */
#ifndef CORRAL_HOSTMETRICS_H
#define CORRAL_HOSTMETRICS_H

#include <stdint.h>
#include <sys/types.h>

/* CPU use across all cores since the previous call, per mille (0-1000);
 * the state is the previous /proc/stat sample, kept by the caller
 * (zero-initialised before the first call, which returns 0). */
struct corral_cpu_sample {
    uint64_t busy;
    uint64_t total;
};
int corral_host_cpu_pm(struct corral_cpu_sample *prev);

/* Memory in use (1 - MemAvailable/MemTotal), per mille; -1 when unreadable. */
int corral_host_mem_pm(void);

/* Resident set size of a process in bytes; -1 when it is gone. */
int64_t corral_proc_rss_bytes(pid_t pid);

#endif
