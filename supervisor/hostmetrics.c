/* /proc readers: small, allocation-free, tolerant of a /proc that lacks a
 * field (they report "unknown" rather than fail). */
#include "hostmetrics.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int corral_host_cpu_pm(struct corral_cpu_sample *prev)
{
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL)
        return 0;
    unsigned long long v[10] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 4)
        return 0;
    /* idle + iowait are not busy; guest time is already in user. */
    uint64_t total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    uint64_t busy = total - v[3] - v[4];
    int pm = 0;
    if (prev->total != 0 && total > prev->total)
        pm = (int)((busy - prev->busy) * 1000 / (total - prev->total));
    prev->busy = busy;
    prev->total = total;
    return pm < 0 ? 0 : pm > 1000 ? 1000 : pm;
}

int corral_host_mem_pm(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (f == NULL)
        return -1;
    char line[128];
    long long total = -1, avail = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "MemTotal:", 9) == 0)
            sscanf(line + 9, "%lld", &total);
        else if (strncmp(line, "MemAvailable:", 13) == 0)
            sscanf(line + 13, "%lld", &avail);
    }
    fclose(f);
    if (total <= 0 || avail < 0)
        return -1;
    return (int)((total - avail) * 1000 / total);
}

int64_t corral_proc_rss_bytes(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    long long size, resident;
    int n = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    if (n != 2)
        return -1;
    return (int64_t)resident * sysconf(_SC_PAGESIZE);
}
