/* Usage from AI answers in the shapes of OpenAI (chat and Responses) and
 * Anthropic, whole or streamed, and the settlement of a call against its
 * estimate (docs/tokens.md). A count the answer gets wrong is never
 * believed: the estimate stands for it and the record says so. */
#include "usage.h"

#include <stdio.h>
#include <string.h>

#include "corral/util.h"

void corral_usage_init(struct corral_usage *u)
{
    memset(u, 0, sizeof(*u));
    u->input_tokens = u->output_tokens = -1;
}

/* A count field: 1 with *out set when it is an integer from 0 to
 * CORRAL_TOKENS_MAX, 0 when absent or null, -1 when anything else. */
static int count_field(const json_t *obj, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(obj, name);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return -1;
    json_int_t n = json_integer_value(v);
    if (n < 0 || n > CORRAL_TOKENS_MAX)
        return -1;
    *out = (int64_t)n;
    return 1;
}

static void take_counts(struct corral_usage *u, const json_t *usage, int with_output)
{
    if (!json_is_object(usage))
        return;
    int64_t v = 0;
    /* Input: OpenAI chat's prompt_tokens, else input_tokens plus
     * Anthropic's cache writes and reads (its input_tokens leaves them out). */
    int rc = count_field(usage, "prompt_tokens", &v);
    if (rc == 0) {
        rc = count_field(usage, "input_tokens", &v);
        if (rc == 1) {
            static const char *const cache[] = {"cache_creation_input_tokens",
                                                "cache_read_input_tokens"};
            for (size_t i = 0; i < 2 && rc == 1; i++) {
                int64_t c = 0;
                int crc = count_field(usage, cache[i], &c);
                if (crc < 0 || v + c > CORRAL_TOKENS_MAX)
                    rc = -1;
                else
                    v += c;
            }
        }
    }
    if (rc == 1)
        u->input_tokens = v;
    else if (rc < 0)
        u->bad = 1;
    if (!with_output)
        return;
    rc = count_field(usage, "completion_tokens", &v);
    if (rc == 0)
        rc = count_field(usage, "output_tokens", &v);
    if (rc == 1)
        u->output_tokens = v;
    else if (rc < 0)
        u->bad = 1;
    /* A usage that is there but is not an object, or holds neither count,
     * is not nonsense: OpenAI's chunks carry "usage": null until the last. */
}

static void take_model(struct corral_usage *u, const json_t *obj)
{
    const char *m = json_string_value(json_object_get(obj, "model"));
    if (m == NULL)
        return;
    size_t n = strlen(m);
    if (n == 0 || n > CORRAL_MODEL_MAX)
        return;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)m[i] <= 0x20 || (unsigned char)m[i] >= 0x7f)
            return; /* it goes into records, logs and price lookups: printable only */
    memcpy(u->model, m, n + 1);
}

static void take(struct corral_usage *u, const json_t *obj, int with_output)
{
    take_model(u, obj);
    const json_t *usage = json_object_get(obj, "usage");
    if (usage != NULL && !json_is_null(usage) && !json_is_object(usage))
        u->bad = 1;
    take_counts(u, usage, with_output);
}

void corral_usage_from_event(struct corral_usage *u, const json_t *data)
{
    if (!json_is_object(data))
        return;
    take(u, data, 1);
    /* Anthropic's message_start: the input count is final, its output
     * count (1 or so) a placeholder that message_delta replaces: left out,
     * so a stream cut before message_delta settles its output at the
     * estimate, flagged, rather than at a count the service never meant. */
    const json_t *o = json_object_get(data, "message");
    if (json_is_object(o))
        take(u, o, 0);
    o = json_object_get(data, "response");
    if (json_is_object(o))
        take(u, o, 1);
}

void corral_usage_from_body(struct corral_usage *u, const char *body, size_t len)
{
    if (body == NULL || len == 0)
        return;
    json_t *root = json_loadb(body, len, 0, NULL);
    if (json_is_object(root))
        take(u, root, 1);
    json_decref(root);
}

void corral_usage_settle(const struct corral_usage *u, const struct corral_estimate *est,
                         const struct corral_service_conf *sv, struct corral_job_usage *out)
{
    memset(out, 0, sizeof(*out));
    out->estimated = u->bad || u->input_tokens < 0 || u->output_tokens < 0;
    out->input_tokens = u->input_tokens >= 0 ? u->input_tokens : est->input_tokens;
    out->output_tokens = u->output_tokens >= 0 ? u->output_tokens : est->output_tokens;
    const char *model = u->model[0] != '\0' ? u->model : est->model;
    snprintf(out->model, sizeof(out->model), "%s", model);
    if (sv != NULL) {
        int64_t in, outp;
        corral_price_for(sv, out->model, &in, &outp);
        out->cost_nano = corral_cost_nano(out->input_tokens, out->output_tokens, in, outp);
    }
}

char *corral_job_usage_json(const struct corral_job_usage *ju)
{
    char cost[48];
    corral_money_format(ju->cost_nano, cost, sizeof(cost));
    /* The model is printable ASCII (take_model, the estimate); quotes and
     * backslashes are escaped all the same. */
    char model[2 * CORRAL_MODEL_MAX + 3];
    size_t k = 0;
    model[k++] = '"';
    for (const char *c = ju->model; *c != '\0' && k < sizeof(model) - 3; c++) {
        if (*c == '"' || *c == '\\')
            model[k++] = '\\';
        model[k++] = *c;
    }
    model[k++] = '"';
    model[k] = '\0';
    return corral_xasprintf("{\"input_tokens\":%lld,\"output_tokens\":%lld,\"model\":%s,"
                            "\"estimated\":%s,\"cost\":%s,\"cost_nano\":%lld}",
                            (long long)ju->input_tokens, (long long)ju->output_tokens,
                            ju->model[0] != '\0' ? model : "null", ju->estimated ? "true" : "false",
                            cost, (long long)ju->cost_nano);
}
