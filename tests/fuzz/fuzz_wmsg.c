/* libFuzzer target for the fd-3 line protocol corrald reads from its
 * workers: every line the parser accepts must format back into a line that
 * parses to the same message. The same bytes are read as a message of the
 * worker's control channel (worker/ctlmsg.c): an accepted cancel has three
 * words, each non-empty, without a blank or a NUL, within the buffer, and
 * written back as "cancel Q ID RUN" it reads the same. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corral/wmsg.h"
#include "ctlmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int same(const struct corral_wmsg *a, const struct corral_wmsg *b)
{
    return a->type == b->type && a->busy == b->busy && a->slots == b->slots && a->jobs == b->jobs &&
           a->rss_kb == b->rss_kb && a->unwritten == b->unwritten && a->ms == b->ms &&
           a->outcome == b->outcome && strcmp(a->queue, b->queue) == 0;
}

static int word_ok(const char *w, size_t cap)
{
    size_t n = strnlen(w, cap);
    return n > 0 && n < cap && strchr(w, ' ') == NULL;
}

static void control_message(const uint8_t *data, size_t size)
{
    char q[24], id[24], run[24], q2[24], id2[24], run2[24];
    if (corral_control_parse_cancel((const char *)data, size, q, id, run, sizeof(q)) < 0)
        return;
    if (!word_ok(q, sizeof(q)) || !word_ok(id, sizeof(id)) || !word_ok(run, sizeof(run)))
        abort();
    char back[96];
    int n = snprintf(back, sizeof(back), "cancel %s %s %s", q, id, run);
    if (corral_control_parse_cancel(back, (size_t)n, q2, id2, run2, sizeof(q2)) < 0 ||
        strcmp(q, q2) != 0 || strcmp(id, id2) != 0 || strcmp(run, run2) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    control_message(data, size);
    if (size > 2 * CORRAL_WMSG_MAX)
        return 0;
    char *line = malloc(size + 1);
    memcpy(line, data, size);
    line[size] = '\0';
    struct corral_wmsg m, m2;
    struct corral_err err;
    if (corral_wmsg_parse(line, &m, &err) < 0) {
        if (err.code != CORRAL_ERR_INVALID || err.msg[0] == '\0')
            abort();
        free(line);
        return 0;
    }
    if (m.busy < 0 || m.slots < 0 || m.busy > m.slots || m.jobs < 0 || m.rss_kb < 0 ||
        m.unwritten < 0 || m.ms < 0 || (unsigned)m.outcome > CORRAL_OUTCOME_DEFER ||
        memchr(m.queue, '\0', sizeof(m.queue)) == NULL)
        abort();
    char buf[CORRAL_WMSG_MAX];
    int n = corral_wmsg_format(&m, buf, sizeof(buf));
    if (n <= 0 || buf[n - 1] != '\n' || (size_t)n != strlen(buf)) {
        fprintf(stderr, "accepted \"%s\" but cannot format it back\n", line);
        abort();
    }
    buf[n - 1] = '\0';
    if (corral_wmsg_parse(buf, &m2, &err) < 0 || !same(&m, &m2)) {
        fprintf(stderr, "\"%s\" formats as \"%s\", which does not parse back the same\n", line,
                buf);
        abort();
    }
    free(line);
    return 0;
}
