/* Money as whole nano-units: prices per million tokens, spend budgets and
 * the cost of one call, in integer arithmetic only (docs/tokens.md, "Cost"),
 * so the ledger's sums are exact and every host prices a call the same. */
#include "corral/cost.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "corral/config.h"

#define MONEY_HINT "expected an amount like 2.5, 0.0375 or 15 (at most 9 decimals)"

int corral_money_parse(const char *s, int64_t max_nano, int64_t *nano, struct corral_err *err)
{
    const char *p = s;
    int64_t whole = 0, frac = 0;
    int digits = 0, decimals = 0, too_fine = 0;
    /* Whole units: stop counting once past the bound, so a long run of
     * digits is "too large", never an overflow. */
    for (; isdigit((unsigned char)*p); p++) {
        digits = 1;
        if (whole <= max_nano / CORRAL_NANO)
            whole = whole * 10 + (*p - '0');
    }
    if (*p == '.') {
        const char *first = ++p;
        for (; isdigit((unsigned char)*p); p++) {
            if (decimals < 9) {
                frac = frac * 10 + (*p - '0');
                decimals++;
            } else if (*p != '0') {
                too_fine = 1; /* a tenth decimal that is not zero */
            }
        }
        if (p == first)
            digits = 0; /* "5." */
    }
    if (digits == 0 || *p != '\0' || too_fine)
        return corral_err_set(err, CORRAL_ERR_INVALID, MONEY_HINT " (got \"%s\")", s);
    for (int d = decimals; d < 9; d++)
        frac *= 10;
    if (whole > max_nano / CORRAL_NANO || whole * CORRAL_NANO > max_nano - frac) {
        char most[48];
        corral_money_format(max_nano, most, sizeof(most));
        return corral_err_set(err, CORRAL_ERR_INVALID, "must be at most %s (got \"%s\")", most, s);
    }
    *nano = whole * CORRAL_NANO + frac;
    return 0;
}

void corral_money_format(int64_t nano, char *buf, size_t len)
{
    const char *sign = "";
    uint64_t v = (uint64_t)nano;
    if (nano < 0) {
        sign = "-";
        v = 0 - v;
    }
    uint64_t whole = v / (uint64_t)CORRAL_NANO, frac = v % (uint64_t)CORRAL_NANO;
    if (frac == 0) {
        snprintf(buf, len, "%s%llu", sign, (unsigned long long)whole);
        return;
    }
    char f[16];
    snprintf(f, sizeof(f), "%09llu", (unsigned long long)frac);
    size_t n = strlen(f);
    while (n > 0 && f[n - 1] == '0')
        f[--n] = '\0';
    snprintf(buf, len, "%s%llu.%s", sign, (unsigned long long)whole, f);
}

int corral_money_rate_parse(const char *s, int64_t *nano, int64_t *period_ms,
                            struct corral_err *err)
{
    const char *slash = strchr(s, '/');
    char amount[64];
    size_t n = slash ? (size_t)(slash - s) : 0;
    int64_t a = 0, count = 0, p = 0;
    char rate[80];
    if (slash == NULL || n == 0 || n >= sizeof(amount))
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "expected AMOUNT/PERIOD like 20/d, 0.5/h or 100/30d (got \"%s\")", s);
    memcpy(amount, s, n);
    amount[n] = '\0';
    /* The period as a rate reads it: "1/PERIOD". */
    int rn = snprintf(rate, sizeof(rate), "1%s", slash);
    if (rn >= (int)sizeof(rate) || corral_parse_rate(rate, &count, &p, NULL) < 0)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "expected AMOUNT/PERIOD like 20/d, 0.5/h or 100/30d (got \"%s\")", s);
    if (corral_money_parse(amount, CORRAL_BUDGET_MAX_NANO, &a, err) < 0) {
        corral_err_prefix(err, "the amount");
        return -1;
    }
    if (a == 0)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "the amount must be above 0 (leave the key out for no budget) "
                              "(got \"%s\")",
                              s);
    *nano = a;
    *period_ms = p;
    return 0;
}

/* Printable ASCII without blanks: what a model name may hold. */
static int model_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f;
}

int corral_price_line_parse(const char *s, char *model, size_t model_len, int64_t *input_nano,
                            int64_t *output_nano, struct corral_err *err)
{
    char part[3][CORRAL_MODEL_MAX + 2];
    const char *p = s;
    int n = 0;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        size_t len = strcspn(p, " \t");
        if (n == 3)
            return corral_err_set(
                err, CORRAL_ERR_INVALID,
                "expected MODEL INPUT OUTPUT like gpt-4o-mini 0.15 0.6 (got \"%s\")", s);
        if (len > CORRAL_MODEL_MAX)
            return corral_err_set(err, CORRAL_ERR_INVALID, "%s is at most %d bytes (got \"%s\")",
                                  n == 0 ? "the model name" : "a price", CORRAL_MODEL_MAX, s);
        memcpy(part[n], p, len);
        part[n++][len] = '\0';
        p += len;
    }
    if (n != 3)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "expected MODEL INPUT OUTPUT like gpt-4o-mini 0.15 0.6 (got \"%s\")",
                              s);
    size_t mlen = strlen(part[0]);
    for (size_t i = 0; i < mlen; i++)
        if (!model_char((unsigned char)part[0][i]))
            return corral_err_set(err, CORRAL_ERR_INVALID,
                                  "the model name is printable ASCII without blanks (got \"%s\")",
                                  s);
    if (mlen >= model_len)
        return corral_err_set(err, CORRAL_ERR_INVALID,
                              "the model name is at most %zu bytes (got \"%s\")", model_len - 1, s);
    int64_t in = 0, out = 0;
    if (corral_money_parse(part[1], CORRAL_PRICE_MAX_NANO, &in, err) < 0) {
        corral_err_prefix(err, "the input price");
        return -1;
    }
    if (corral_money_parse(part[2], CORRAL_PRICE_MAX_NANO, &out, err) < 0) {
        corral_err_prefix(err, "the output price");
        return -1;
    }
    memcpy(model, part[0], mlen + 1);
    *input_nano = in;
    *output_nano = out;
    return 0;
}

static int64_t clamp(int64_t v, int64_t hi)
{
    return v < 0 ? 0 : v > hi ? hi : v;
}

int64_t corral_cost_nano(int64_t input_tokens, int64_t output_tokens, int64_t price_input_nano,
                         int64_t price_output_nano)
{
    /* tokens x price / 10^6, exactly: each price splits into whole nano per
     * token (hi) and the millionths left over (lo), so no product passes
     * 10^18 and the one division rounds the sum of both remainders. */
    const int64_t M = 1000000;
    int64_t ti = clamp(input_tokens, CORRAL_TOKENS_MAX);
    int64_t to = clamp(output_tokens, CORRAL_TOKENS_MAX);
    int64_t pi = clamp(price_input_nano, CORRAL_PRICE_MAX_NANO);
    int64_t po = clamp(price_output_nano, CORRAL_PRICE_MAX_NANO);
    int64_t whole = ti * (pi / M) + to * (po / M);
    int64_t rest = ti * (pi % M) + to * (po % M);
    return whole + rest / M + (rest % M >= M / 2 ? 1 : 0);
}

/* "-2024-08-06" or "-20241022": a release date as providers append it. */
static int is_date_suffix(const char *s)
{
    if (*s++ != '-')
        return 0;
    size_t n = strlen(s);
    if (n == 8)
        return strspn(s, "0123456789") == 8;
    return n == 10 && strspn(s, "0123456789") == 4 && s[4] == '-' &&
           strspn(s + 5, "0123456789") == 2 && s[7] == '-' && strspn(s + 8, "0123456789") == 2;
}

int corral_model_matches(const char *line_model, const char *answer_model)
{
    if (line_model == NULL || answer_model == NULL || line_model[0] == '\0')
        return 0;
    size_t n = strlen(line_model);
    if (strncmp(line_model, answer_model, n) != 0)
        return 0;
    return answer_model[n] == '\0' || is_date_suffix(answer_model + n);
}

int corral_price_for(const struct corral_service_conf *sv, const char *model, int64_t *input_nano,
                     int64_t *output_nano)
{
    const struct corral_price_list *l = &sv->prices;
    const struct corral_price *hit = NULL;
    if (model != NULL && model[0] != '\0') {
        for (size_t i = 0; i < l->n && hit == NULL; i++)
            if (strcmp(l->items[i].model, model) == 0)
                hit = &l->items[i];
        for (size_t i = 0; i < l->n && hit == NULL; i++)
            if (corral_model_matches(l->items[i].model, model))
                hit = &l->items[i];
    }
    *input_nano = hit ? hit->input_nano : sv->price_input_nano;
    *output_nano = hit ? hit->output_nano : sv->price_output_nano;
    return hit != NULL;
}
