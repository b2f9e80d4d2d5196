/* corral-web: looks the embedded files up and names their types. */
#include "assets.h"

#include <string.h>

static const char *type_of(const char *name)
{
    static const char *const types[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
    };
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        size_t e = strlen(types[i][0]);
        if (n > e && strcmp(name + n - e, types[i][0]) == 0)
            return types[i][1];
    }
    return "application/octet-stream";
}

int web_asset_find(const char *name, struct web_asset *out)
{
    for (size_t i = 0; i < web_nblobs; i++) {
        if (strcmp(web_blobs[i].name, name) == 0) {
            out->data = web_blobs[i].data;
            out->len = web_blobs[i].len;
            out->type = type_of(name);
            return 0;
        }
    }
    return -1;
}
