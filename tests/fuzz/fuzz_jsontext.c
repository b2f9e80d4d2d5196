/* libFuzzer target for the character checks of JSON text that libcorral and
 * the worker run on payloads (corral_json_text_check). jansson is the
 * oracle: every input jansson parses as JSON (strictly: it refuses invalid
 * UTF-8 and raw control characters) must pass the check; a refusal must
 * name a byte inside the input. jansson takes a raw NUL byte between
 * tokens ("[1\0, 2]" parses), which RFC 8259 does not: inputs with one are
 * left out of the comparison. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "corral/jsontext.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[96] = "";
    int rc = corral_json_text_check((const char *)data, size, why, sizeof(why));
    if (rc != 0 && rc != -1)
        abort();
    if (rc == -1) {
        const char *at = strstr(why, "at byte ");
        size_t off;
        if (at == NULL || sscanf(at + 8, "%zu", &off) != 1 || off >= size)
            abort();
    }
    json_error_t jerr;
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, &jerr);
    if (j != NULL && rc != 0 && memchr(data, '\0', size) == NULL) {
        fprintf(stderr, "jansson parsed it, the check refused: %s\n", why);
        abort();
    }
    json_decref(j);
    return 0;
}
