/* libFuzzer target for corral.conf: the loader (string and file readers,
 * every value parser behind it, the cross-checks) and `corrald --check`'s
 * dump, which must load back and be a fixed point of load-then-dump. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "corral/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* Paths may use ${CREDENTIALS_DIRECTORY}: let them expand. */
    setenv("CREDENTIALS_DIRECTORY", "/run/credentials/corrald.service", 1);
    return 0;
}

static void check_errors(const struct corral_config *cfg, const struct corral_config_errors *errs)
{
    if ((cfg == NULL) != (errs->n > 0))
        abort(); /* a config xor its errors */
    for (size_t i = 0; i < errs->n; i++)
        if (errs->lines[i] == NULL || errs->lines[i][0] == '\0')
            abort();
}

static char *dump(const struct corral_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL)
        abort();
    corral_config_dump(cfg, f);
    fclose(f);
    return buf;
}

/* Loads a dump; it must be a valid config. */
static struct corral_config *reload(const char *text)
{
    struct corral_config_errors errs;
    struct corral_config *cfg = corral_config_load_string(text, "fuzz.conf", &errs);
    if (cfg == NULL) {
        fprintf(stderr, "the dump does not load back:\n%s\n", text);
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "  %s\n", errs.lines[i]);
        abort();
    }
    corral_config_errors_free(&errs);
    return cfg;
}

/* The file reader (getline) sees embedded NULs the string reader cannot:
 * inputs holding one go through a memfd. */
static struct corral_config *load_file(const uint8_t *data, size_t size,
                                       struct corral_config_errors *errs)
{
    int fd = memfd_create("fuzz.conf", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    if (size > 0 && write(fd, data, size) != (ssize_t)size)
        abort();
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    struct corral_config *cfg = corral_config_load(path, errs);
    close(fd);
    return cfg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024)
        return 0;
    struct corral_config_errors errs;
    struct corral_config *cfg;
    if (memchr(data, '\0', size) != NULL) {
        cfg = load_file(data, size, &errs);
    } else {
        char *text = malloc(size + 1);
        memcpy(text, data, size);
        text[size] = '\0';
        cfg = corral_config_load_string(text, "fuzz.conf", &errs);
        free(text);
    }
    check_errors(cfg, &errs);
    corral_config_errors_free(&errs);
    if (cfg == NULL)
        return 0;
    for (size_t i = 0; i < cfg->pool.queues.n; i++)
        if (corral_config_queue(cfg, cfg->pool.queues.items[i]) == NULL)
            abort();
    /* The dump is a valid config, and dumping what it loads to changes
     * nothing more (the first dump may drop hidden headers). */
    char *d1 = dump(cfg);
    struct corral_config *c2 = reload(d1);
    char *d2 = dump(c2);
    /* Unless the first dump left something out (its comments say what),
     * it already is that fixed point. */
    const char *body1 = strchr(d1, '\n'), *body2 = strchr(d2, '\n');
    if (strstr(body1, "\n;") == NULL && strcmp(body1, body2) != 0) {
        fprintf(stderr, "dump changes on reload:\n--- first\n%s--- second\n%s", d1, d2);
        abort();
    }
    struct corral_config *c3 = reload(d2);
    char *d3 = dump(c3);
    if (strcmp(d2, d3) != 0) {
        fprintf(stderr, "dump is not a fixed point:\n--- first\n%s--- second\n%s", d2, d3);
        abort();
    }
    free(d1);
    free(d2);
    free(d3);
    corral_config_free(c3);
    corral_config_free(c2);
    corral_config_free(cfg);
    return 0;
}
