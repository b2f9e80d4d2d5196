/* Token estimates before a call (docs/tokens.md, "The estimate"): the
 * enqueue option `tokens`, else the payload's output cap plus its size over
 * bytes_per_token, the way providers' own rate limiters count a request
 * before it runs. */
#include "corral/tokens.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "corral/config.h"
#include "corral/util.h"

/* A JSON number with an integral value from 1 to CORRAL_TOKENS_MAX (100.0
 * as 100: the Function library, in Lua, does not tell them apart), else 0. */
static int64_t count_of(const json_t *v)
{
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        return n >= 1 && n <= CORRAL_TOKENS_MAX ? (int64_t)n : 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* Range first: the cast is defined only for values that fit. */
        return d >= 1 && d <= (double)CORRAL_TOKENS_MAX && (double)(int64_t)d == d ? (int64_t)d : 0;
    }
    return 0;
}

static int64_t cap_of(const json_t *root)
{
    static const char *const fields[] = {"max_tokens", "max_completion_tokens",
                                         "max_output_tokens"};
    int64_t cap = 0;
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        int64_t v = count_of(json_object_get(root, fields[i]));
        if (v > cap)
            cap = v;
    }
    return cap;
}

static json_t *load_object(const char *payload, size_t len)
{
    if (payload == NULL || len == 0)
        return NULL;
    json_t *root = json_loadb(payload, len, JSON_ALLOW_NUL, NULL);
    if (root != NULL && !json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int64_t corral_tokens_output_cap(const char *payload, size_t len)
{
    json_t *root = load_object(payload, len);
    int64_t cap = root ? cap_of(root) : 0;
    json_decref(root);
    return cap;
}

void corral_tokens_estimate(const char *payload, size_t len, int bytes_per_token,
                            int64_t option_tokens, struct corral_estimate *out)
{
    memset(out, 0, sizeof(*out));
    json_t *root = load_object(payload, len);
    const char *model = root ? json_string_value(json_object_get(root, "model")) : NULL;
    if (model != NULL && strlen(model) <= CORRAL_MODEL_MAX &&
        strspn(model, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:/@+") ==
            strlen(model))
        memcpy(out->model, model, strlen(model) + 1);
    if (option_tokens > 0) {
        out->source = CORRAL_ESTIMATE_OPTION;
        out->input_tokens = option_tokens < CORRAL_TOKENS_MAX ? option_tokens : CORRAL_TOKENS_MAX;
    } else {
        out->source = CORRAL_ESTIMATE_PAYLOAD;
        uint64_t bpt = bytes_per_token < 1 ? 1 : (uint64_t)bytes_per_token;
        uint64_t in = ((uint64_t)len + bpt - 1) / bpt;
        out->input_tokens = in < (uint64_t)CORRAL_TOKENS_MAX ? (int64_t)in : CORRAL_TOKENS_MAX;
        out->output_tokens = root ? cap_of(root) : 0;
    }
    json_decref(root);
}

int64_t corral_estimate_total(const struct corral_estimate *e)
{
    return e->input_tokens + e->output_tokens;
}

int corral_tokens_never_fits(const struct corral_service_conf *sv, const struct corral_estimate *e,
                             char *why, size_t why_len)
{
    char per[32];
    int64_t total = corral_estimate_total(e);
    if (sv->tokens_count > 0 && total > sv->tokens_count) {
        corral_format_duration(sv->tokens_period_ms, per, sizeof(per));
        snprintf(why, why_len,
                 "the estimate of %lld tokens is above the budget of %lld tokens per %s "
                 "(service %s)",
                 (long long)total, (long long)sv->tokens_count, per, sv->name);
        return 1;
    }
    if (sv->budget_nano > 0) {
        int64_t in, out;
        corral_price_for(sv, e->model, &in, &out);
        int64_t cost = corral_cost_nano(e->input_tokens, e->output_tokens, in, out);
        if (cost > sv->budget_nano) {
            char c[48], b[48];
            corral_money_format(cost, c, sizeof(c));
            corral_money_format(sv->budget_nano, b, sizeof(b));
            corral_format_duration(sv->budget_period_ms, per, sizeof(per));
            snprintf(why, why_len,
                     "the estimated cost of %s is above the spend budget of %s per %s "
                     "(service %s)",
                     c, b, per, sv->name);
            return 1;
        }
    }
    return 0;
}

int corral_tokens_option_check(const char *queue, int64_t tokens, struct corral_err *err)
{
    if (tokens < 0 || tokens > CORRAL_TOKENS_MAX)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "queue \"%s\": tokens must be a whole number from 1 to %lld, got "
                              "%lld",
                              queue, (long long)CORRAL_TOKENS_MAX, (long long)tokens);
    return 0;
}

int corral_tokens_option_parse(const char *queue, const char *json, size_t len, int64_t *tokens,
                               struct corral_err *err)
{
    json_t *v = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    int64_t n = count_of(v);
    json_decref(v);
    if (n > 0) {
        *tokens = n;
        return 0;
    }
    /* The value as sent, cut short and with control bytes shown as '?':
     * it goes into an error reply and maybe a log (bytes outside printable
     * ASCII shown as '?'). */
    char shown[48];
    size_t k = 0, i = 0;
    for (; i < len && k < sizeof(shown) - 4; i++) {
        unsigned char c = (unsigned char)json[i];
        shown[k++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    if (i < len) {
        memcpy(shown + k, "...", 3);
        k += 3;
    }
    shown[k] = '\0';
    return corral_err_set(err, CORRAL_ERR_INVALID,
                          "queue \"%s\": tokens must be a whole number from 1 to %lld, got %s",
                          queue, (long long)CORRAL_TOKENS_MAX, k ? shown : "nothing");
}

void corral_tokens_declare_fields(struct json_t *settings, const struct corral_service_conf *sv)
{
    json_t *o = settings;
    json_object_set_new(o, "tokens", json_integer(sv->tokens_count));
    json_object_set_new(o, "tokens_period_ms",
                        json_integer(sv->tokens_period_ms > 0 ? sv->tokens_period_ms : 60000));
    json_object_set_new(
        o, "bytes_per_token",
        json_integer(sv->bytes_per_token > 0 ? sv->bytes_per_token : CORRAL_BYTES_PER_TOKEN));
    json_object_set_new(o, "price_input_nano", json_integer(sv->price_input_nano));
    json_object_set_new(o, "price_output_nano", json_integer(sv->price_output_nano));
    json_object_set_new(o, "budget_nano", json_integer(sv->budget_nano));
    json_object_set_new(o, "budget_period_ms",
                        json_integer(sv->budget_period_ms > 0 ? sv->budget_period_ms : 86400000));
}
