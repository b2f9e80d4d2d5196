/* corral-web's static files (the dashboard's HTML, script and styles, and
 * uPlot from web/node_modules), embedded in the binary at build time by
 * web/embed.sh: nothing is read from disk or fetched at run time. */
#ifndef CORRAL_WEB_ASSETS_H
#define CORRAL_WEB_ASSETS_H

#include <stddef.h>

/* One embedded file, as the generated table holds it. */
struct web_blob {
    const char *name;
    const unsigned char *data;
    size_t len;
};

/* The generated table (build/gen/web_assets.c). */
extern const struct web_blob web_blobs[];
extern const size_t web_nblobs;

/* A file to serve: its bytes and its Content-Type. */
struct web_asset {
    const unsigned char *data;
    size_t len;
    const char *type;
};

/* Finds name among the embedded files; 0, or -1 when there is none. */
int web_asset_find(const char *name, struct web_asset *out);

#endif
