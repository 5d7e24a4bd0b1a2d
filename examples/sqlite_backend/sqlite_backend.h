/* sqlite_backend.h -- a gtask backend that keeps task states and results in
 * an SQLite database file: an example of an implementation written outside
 * the library, on <gtask/extend.h> alone (docs/EXTENDING.md).
 *
 *   gtask_backend *be;
 *   int rc = sqlite_backend_new(&be, "results.db", 3600 * 1000);
 *   gtask_server *s = gtask_server_new(broker, be);   // or gtask_client_new
 *   gtask_backend_free(be);                           // the server keeps its own
 *
 * Several processes may share one file (WAL mode; a write waits up to 5 s for
 * another process's lock).  See sqlite_backend.c for how waits block. */
#ifndef SQLITE_BACKEND_H
#define SQLITE_BACKEND_H

#include <gtask/extend.h>

#include <stdint.h>

/* Opens (creating if needed) the database at path and wraps it in a new
 * backend handle (free it with gtask_backend_free()).  Records expire
 * ttl_ms after their last write (<= 0: 24 hours, as the Redis backend's
 * default); an expired record reads as unknown (GTASK_ENOTFOUND).  Returns 0,
 * GTASK_EINVAL (out or path NULL), GTASK_ENOMEM, or GTASK_ECONN when the
 * database cannot be opened or set up.  The handle is thread-safe, as
 * extend.h requires. */
int sqlite_backend_new(gtask_backend **out, const char *path, int64_t ttl_ms);

#endif /* SQLITE_BACKEND_H */
