/* corralctl status: fallback shares (see fallback.h). */
#include "fallback.h"

static long long served_of(json_t *served, const char *name)
{
    return (long long)json_integer_value(json_object_get(served, name));
}

void ctl_fallback_print(json_t *queues, FILE *out, int color)
{
    const char *bold = color ? "\033[1m" : "", *off = color ? "\033[0m" : "";
    size_t i, k;
    json_t *q, *name;
    int any = 0;
    json_array_foreach(queues, i, q)
    {
        json_t *list = json_object_get(q, "services");
        json_t *served = json_object_get(q, "served");
        if (!json_is_array(list) || !json_is_object(served))
            continue;
        long long total = 0;
        json_array_foreach(list, k, name)
        {
            total += served_of(served, json_string_value(name));
        }
        if (!any)
            fputc('\n', out);
        any = 1;
        fprintf(out, "%sfallback%s %s:", bold, off, json_string_value(json_object_get(q, "name")));
        json_array_foreach(list, k, name)
        {
            long long n = served_of(served, json_string_value(name));
            fprintf(out, "%s %s %lld%% (%lld)", k ? "," : "", json_string_value(name),
                    total > 0 ? (n * 100 + total / 2) / total : 0, n);
        }
        fprintf(out, " of %lld jobs in the last minute\n", total);
    }
}
