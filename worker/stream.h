/* Streamed answers (docs/protocol.md, "Streamed answers"): an AI service's
 * text/event-stream answer read as it arrives, each piece of its text
 * appended to the job's Redis Stream for any client to follow, and at the
 * end the assembled result, or a failure naming what went wrong.
 *
 * Two parts. corral_stream reads one answer (pure: the bytes in, pieces of
 * text out through a callback, the verdict at the end). The sink writes
 * pieces to Redis on the worker's commands connection
 * (corral_stream_append, queue/lua/control.lua); the engine makes one per
 * worker and hands it to each run (handler.h, run->sink). */
#ifndef CORRAL_STREAM_H
#define CORRAL_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "corral/err.h"
#include "handler.h"
#include "usage.h"

struct corral_conn;

/* --- reading one answer ------------------------------------------------ */

struct corral_stream;

/* A piece of the answer's text (valid during the call). */
typedef void corral_stream_piece_fn(void *priv, const char *text, size_t len);

/* Whether a Content-Type names an event stream (text/event-stream, any
 * parameters, any case). NULL: no. */
int corral_stream_content_type(const char *content_type);

/* A reader bounded by max_result_bytes of assembled text (the event stream
 * itself by CORRAL_STREAM_RAW_FACTOR times that). Free with
 * corral_stream_free. */
#define CORRAL_STREAM_RAW_FACTOR 16
struct corral_stream *corral_stream_new(int64_t max_result_bytes, corral_stream_piece_fn *piece,
                                        void *priv);
/* The next bytes of the body. 0 to go on; -1 when reading must stop (a
 * malformed event, an error event, over a limit): corral_stream_end says
 * why. */
int corral_stream_feed(struct corral_stream *s, const char *buf, size_t len);
/* The verdict once the transfer ended: transfer_error is NULL when the
 * body came whole, else why it did not (a timeout, a reset). Sets *end and
 * *out (malloc'ed, *out_len bytes): for CORRAL_END_DONE the result, a JSON
 * object {"text", "model", "usage", "events", "streamed": true}; else the
 * error, which names what was kept ("... 120 bytes of text streamed, kept
 * in the job's stream"). */
void corral_stream_end(struct corral_stream *s, const char *transfer_error,
                       enum corral_run_end *end, char **out, size_t *out_len);
/* The usage the events reported so far (docs/tokens.md, "Settlement"). */
const struct corral_usage *corral_stream_usage(const struct corral_stream *s);
void corral_stream_free(struct corral_stream *s);

/* --- writing to Redis -------------------------------------------------- */

struct corral_stream_sink;

/* conn, prefix and worker_id must outlive the sink. */
struct corral_stream_sink *corral_stream_sink_new(struct corral_conn *conn, const char *prefix,
                                                  const char *worker_id);
void corral_stream_sink_free(struct corral_stream_sink *k);
/* Appends a piece of run's answer to its job's stream at once (one call,
 * not waiting for the loop turn: a follower reads it within a round
 * trip). Nothing when the connection is down: the piece is lost to
 * followers, never to the result. */
void corral_stream_sink_piece(struct corral_stream_sink *k, const struct corral_run *run,
                              const char *text, size_t len);
/* The answer's end: complete, or failed with error. */
void corral_stream_sink_end(struct corral_stream_sink *k, const struct corral_run *run,
                            int complete, const char *error, size_t error_len);

#endif
