/* The handlers the worker knows, by the `handler` setting of a queue. */
#include "handler.h"

const struct corral_handler_ops *corral_handler_ops_for(enum corral_handler h)
{
    switch (h) {
    case CORRAL_HANDLER_ECHO:
        return &corral_echo_handler;
    case CORRAL_HANDLER_EXEC:
        return &corral_exec_handler;
    case CORRAL_HANDLER_HTTP:
        return &corral_http_handler;
    }
    return NULL;
}
