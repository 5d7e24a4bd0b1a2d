/* sqlite_backend.c -- task states and results in an SQLite database, as a
 * gtask backend built on the public headers only (gtask/gtask.h and
 * gtask/extend.h): the example of docs/EXTENDING.md.  It passes the contract
 * suite (contract_sqlite.c, through <gtask/contract.h>).
 *
 * Schema: a table of states, one row per (queue, id):
 *   gtask_state(queue, id, status, attempts, result, expires_ms)
 * status is the state's name ("PENDING", ..., gtask_status_name), result the
 * encoded result record as the core gives it (opaque bytes, a BLOB),
 * expires_ms the unix time after which the row counts as gone: every write
 * sets it to now + ttl (the Redis backend's expire time, counted from each
 * write), every read ignores rows past it, every write first deletes its own
 * row if it is past it (so that it writes as on a missing row), and every
 * write transaction deletes up to SWEEP_MAX other expired rows (an index
 * range, usually empty; bounded, so that a burst of expiries never makes one
 * call long).
 *
 * and a table of unique keys (claim(), for sends with a chosen id or a
 * content key), one row per (queue, key):
 *   gtask_unique(queue, key, holder, until_ms, expires_ms)
 * A key taken with a TTL is held until until_ms; one taken "until final"
 * (until_ms 0) while its holder's state exists and is not final, and at most
 * the record lifetime (expires_ms).  Expired keys are swept as states are.
 *
 * The contract, as the memory and Redis backends keep it: pending() creates a
 * row only if there is none; started() and store() create one if needed; a
 * final state (SUCCESS, FAILURE) is never overwritten, except by reset();
 * claim() records an id only if it has no state and its key is free.
 * Each call is one transaction (BEGIN IMMEDIATE ... COMMIT), so a batch is
 * applied whole or not at all, and a fin's fenced flag is reported only once
 * its transaction committed.
 *
 * Threads: one connection, guarded by one mutex; every call takes it for its
 * whole transaction.  No user code runs under it.
 *
 * Blocking waits.  SQLite has no blocking pop and no notifications, so wait()
 * combines two things:
 *  - within this process, a condition variable: store() broadcasts it after
 *    committing a final state, so a waiter in the same process wakes at once
 *    (the worker and the client of one process, the contract suite);
 *  - across processes (another process writing the same file), polling with
 *    backoff: the waiter re-reads the row after 2 ms, then 4, 8, ... up to
 *    50 ms between reads, so a result written elsewhere is seen within
 *    50 ms (well inside the contract's "promptly", 200 ms), an idle wait
 *    costs twenty indexed reads a second, and nothing polls faster than
 *    every 2 ms.
 * pthread_cond_timedwait releases the mutex, so other threads' calls run
 * while a waiter waits; the generation counter tells a waiter that some
 * final state was stored (it then re-reads its row at once).
 *
 * Cross-process writes: WAL mode (readers never block the writer) and a busy
 * timeout of 5 s (a writer waits for another process's transaction rather
 * than failing); past it, an operation fails with GTASK_ETIMEDOUT, which the
 * core retries. */
#define _GNU_SOURCE
#include "sqlite_backend.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TTL_MS (24 * 3600 * 1000LL)
#define POLL_FIRST_MS 2
#define POLL_MAX_MS 50
#define SWEEP_MAX 256

typedef struct sqlite_backend {
  pthread_mutex_t mu; /* guards db and the statements, and gen */
  pthread_cond_t cv;  /* CLOCK_MONOTONIC; broadcast when a final state is stored */
  uint64_t gen;       /* counts those broadcasts */
  sqlite3 *db;
  int64_t ttl_ms;
  sqlite3_stmt *sweep, *expire, *get, *pending, *started, *store, *reset;
  sqlite3_stmt *lock_sweep, *lock_get, *lock_put; /* unique keys (claim) */
} sqlite_backend;

static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS gtask_state ("
    "  queue TEXT NOT NULL, id TEXT NOT NULL, status TEXT NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0, result BLOB, expires_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (queue, id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS gtask_state_expiry ON gtask_state (expires_ms);"
    "CREATE TABLE IF NOT EXISTS gtask_unique ("
    "  queue TEXT NOT NULL, key TEXT NOT NULL, holder TEXT NOT NULL,"
    "  until_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (queue, key)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS gtask_unique_expiry ON gtask_unique (expires_ms);";

/* A row is final when its status is one of these; the SQL below spells the
 * same rule as status IN ('SUCCESS','FAILURE'). */
static bool is_final(gtask_status s) { return s == GTASK_SUCCESS || s == GTASK_FAILURE; }

#define STR(x) #x
#define XSTR(x) STR(x)
static const char SQL_SWEEP[] =
    "DELETE FROM gtask_state WHERE (queue, id) IN (SELECT queue, id FROM gtask_state"
    " WHERE expires_ms <= ?1 LIMIT " XSTR(SWEEP_MAX) ")";
static const char SQL_LOCK_SWEEP[] =
    "DELETE FROM gtask_unique WHERE (queue, key) IN (SELECT queue, key FROM gtask_unique"
    " WHERE expires_ms <= ?1 LIMIT " XSTR(SWEEP_MAX) ")";
static const char SQL_LOCK_GET[] = "SELECT holder, until_ms FROM gtask_unique"
                                   " WHERE queue = ?1 AND key = ?2 AND expires_ms > ?3";
static const char SQL_LOCK_PUT[] =
    "INSERT INTO gtask_unique (queue, key, holder, until_ms, expires_ms)"
    " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (queue, key) DO UPDATE"
    " SET holder = excluded.holder, until_ms = excluded.until_ms,"
    " expires_ms = excluded.expires_ms";
static const char SQL_EXPIRE[] =
    "DELETE FROM gtask_state WHERE queue = ?1 AND id = ?2 AND expires_ms <= ?3";
static const char SQL_GET[] = "SELECT status, attempts, result FROM gtask_state"
                              " WHERE queue = ?1 AND id = ?2 AND expires_ms > ?3";
static const char SQL_PENDING[] =
    "INSERT INTO gtask_state (queue, id, status, attempts, expires_ms)"
    " VALUES (?1, ?2, 'PENDING', 0, ?3) ON CONFLICT (queue, id) DO NOTHING";
static const char SQL_STARTED[] =
    "INSERT INTO gtask_state (queue, id, status, attempts, expires_ms)"
    " VALUES (?1, ?2, 'STARTED', ?3, ?4) ON CONFLICT (queue, id) DO UPDATE"
    " SET status = 'STARTED', attempts = excluded.attempts, expires_ms = excluded.expires_ms"
    " WHERE status NOT IN ('SUCCESS', 'FAILURE')";
/* ?4: the result, NULL to keep the previous one.  Returns a row (RETURNING)
 * only when it wrote: none means the state was final already (fenced). */
static const char SQL_STORE[] =
    "INSERT INTO gtask_state (queue, id, status, attempts, result, expires_ms)"
    " VALUES (?1, ?2, ?3, 0, ?4, ?5) ON CONFLICT (queue, id) DO UPDATE"
    " SET status = excluded.status, result = coalesce(excluded.result, result),"
    " expires_ms = excluded.expires_ms WHERE status NOT IN ('SUCCESS', 'FAILURE')"
    " RETURNING 1";
static const char SQL_RESET[] =
    "INSERT INTO gtask_state (queue, id, status, attempts, expires_ms)"
    " VALUES (?1, ?2, 'PENDING', 0, ?3) ON CONFLICT (queue, id) DO UPDATE"
    " SET status = 'PENDING', result = NULL, expires_ms = excluded.expires_ms";

/* ---------------------------------------------------------------- helpers */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An SQLite result code as a gtask one. */
static int sq_err(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_DONE:
  case SQLITE_ROW:
    return 0;
  case SQLITE_NOMEM:
    return GTASK_ENOMEM;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return GTASK_ETIMEDOUT; /* another process held the lock past the busy timeout */
  case SQLITE_TOOBIG:
    return GTASK_ETOOBIG;
  default:
    return GTASK_ECONN; /* the store cannot be used: I/O error, full disk, ... */
  }
}

static gtask_status status_of(const unsigned char *name) {
  for (int s = GTASK_PENDING; s <= GTASK_FAILURE; s++)
    if (name != NULL && strcmp((const char *)name, gtask_status_name((gtask_status)s)) == 0)
      return (gtask_status)s;
  return 0;
}

static int exec(sqlite_backend *be, const char *sql) {
  return sq_err(sqlite3_exec(be->db, sql, NULL, NULL, NULL));
}

/* Runs a statement without result rows to its end and resets it. */
static int step_done(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : sq_err(rc);
}

static void bind_key(sqlite3_stmt *st, const gtask_msg *m) {
  sqlite3_bind_text(st, 1, m->queue, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, m->id, -1, SQLITE_STATIC);
}

/* Deletes m's row if it expired (in a write transaction, before writing it),
 * so that the write sees a missing row, as a read would. */
static int expire_row(sqlite_backend *be, const gtask_msg *m, int64_t now) {
  bind_key(be->expire, m);
  sqlite3_bind_int64(be->expire, 3, now);
  return step_done(be->expire);
}

static bool msgs_valid(gtask_msg *const *msgs, size_t n) {
  if (n > 0 && msgs == NULL)
    return false;
  for (size_t i = 0; i < n; i++)
    if (msgs[i] == NULL || msgs[i]->queue == NULL)
      return false;
  return true;
}

static int read_row(sqlite_backend *be, const char *queue, const char *id, gtask_status *status,
                    uint32_t *attempts, char **result, size_t *len);

/* Opens a write transaction (called with the mutex held) and drops up to
 * SWEEP_MAX expired rows. */
static int tx_begin(sqlite_backend *be, int64_t now) {
  int rc = exec(be, "BEGIN IMMEDIATE");
  if (rc != 0)
    return rc;
  sqlite3_bind_int64(be->sweep, 1, now);
  rc = step_done(be->sweep);
  if (rc == 0) {
    sqlite3_bind_int64(be->lock_sweep, 1, now);
    rc = step_done(be->lock_sweep);
  }
  if (rc != 0)
    exec(be, "ROLLBACK");
  return rc;
}

/* Commits when rc is 0, else rolls back; returns the outcome. */
static int tx_end(sqlite_backend *be, int rc) {
  if (rc == 0 && (rc = exec(be, "COMMIT")) == 0)
    return 0;
  exec(be, "ROLLBACK");
  return rc;
}

/* ---------------------------------------------------------------- writes */

/* Writes the row of each message with st, in one transaction, expired rows
 * going first: ?1 ?2 its key, then its attempt number if attempts is not
 * NULL, then when the row expires. */
static int write_rows(sqlite_backend *be, sqlite3_stmt *st, gtask_msg *const *msgs,
                      const uint32_t *attempts, size_t n) {
  if (n == 0)
    return 0;
  int64_t now = now_ms();
  pthread_mutex_lock(&be->mu);
  int rc = tx_begin(be, now);
  if (rc == 0) {
    for (size_t i = 0; i < n && rc == 0; i++) {
      if ((rc = expire_row(be, msgs[i], now)) != 0)
        break;
      bind_key(st, msgs[i]);
      int col = 3;
      if (attempts != NULL)
        sqlite3_bind_int64(st, col++, attempts[i]);
      sqlite3_bind_int64(st, col, now + be->ttl_ms);
      rc = step_done(st);
    }
    rc = tx_end(be, rc);
  }
  pthread_mutex_unlock(&be->mu);
  return rc;
}

static int sq_pending(void *impl, gtask_msg *const *msgs, size_t n) {
  sqlite_backend *be = impl;
  if (!msgs_valid(msgs, n))
    return GTASK_EINVAL;
  return write_rows(be, be->pending, msgs, NULL, n);
}

static int sq_started(void *impl, gtask_msg *const *msgs, const uint32_t *attempts, size_t n) {
  sqlite_backend *be = impl;
  if (!msgs_valid(msgs, n) || (n > 0 && attempts == NULL))
    return GTASK_EINVAL;
  return write_rows(be, be->started, msgs, attempts, n);
}

static int sq_store(void *impl, gtask_fin *fins, size_t n) {
  sqlite_backend *be = impl;
  if (n > 0 && fins == NULL)
    return GTASK_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (fins[i].msg == NULL || fins[i].msg->queue == NULL ||
        gtask_status_name(fins[i].status)[0] == '?')
      return GTASK_EINVAL;
  if (n == 0)
    return 0;
  /* The fenced flags, reported only once the transaction committed. */
  bool *fenced = calloc(n, sizeof(*fenced));
  if (fenced == NULL)
    return GTASK_ENOMEM;
  int64_t now = now_ms();
  bool wake = false;
  pthread_mutex_lock(&be->mu);
  int rc = tx_begin(be, now);
  if (rc == 0) {
    for (size_t i = 0; i < n && rc == 0; i++) {
      const gtask_fin *f = &fins[i];
      if ((rc = expire_row(be, f->msg, now)) != 0)
        break;
      sqlite3_stmt *st = be->store;
      bind_key(st, f->msg);
      sqlite3_bind_text(st, 3, gtask_status_name(f->status), -1, SQLITE_STATIC);
      if (f->result != NULL && f->result_len > 0)
        sqlite3_bind_blob64(st, 4, f->result, f->result_len, SQLITE_STATIC);
      else
        sqlite3_bind_null(st, 4);
      sqlite3_bind_int64(st, 5, now + be->ttl_ms);
      int s = sqlite3_step(st);
      fenced[i] = s == SQLITE_DONE; /* no row returned: final already */
      if (s == SQLITE_ROW)
        s = sqlite3_step(st);
      sqlite3_reset(st);
      rc = s == SQLITE_DONE ? 0 : sq_err(s);
      wake |= !fenced[i] && is_final(f->status);
    }
    rc = tx_end(be, rc);
  }
  if (rc == 0 && wake) {
    be->gen++;
    pthread_cond_broadcast(&be->cv);
  }
  pthread_mutex_unlock(&be->mu);
  if (rc == 0)
    for (size_t i = 0; i < n; i++)
      fins[i].fenced = fenced[i];
  free(fenced);
  return rc;
}

static int sq_reset(void *impl, gtask_msg *const *msgs, size_t n) {
  sqlite_backend *be = impl;
  if (!msgs_valid(msgs, n))
    return GTASK_EINVAL;
  return write_rows(be, be->reset, msgs, NULL, n);
}

/* Whether the unique key of c is held by a live task; *holder receives the
 * holder's id.  A key taken with a TTL is held until it ends; one taken
 * "until final" while its holder's record exists and is not final (and at
 * most the record lifetime: the row's expires_ms).  Mutex held, in a
 * transaction. */
static int key_held(sqlite_backend *be, const gtask_claim *c, int64_t now, bool *held,
                    char holder[GTASK_ID_SIZE]) {
  sqlite3_stmt *st = be->lock_get;
  sqlite3_bind_text(st, 1, c->msg->queue, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, c->unique_key, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, now);
  int s = sqlite3_step(st);
  int64_t until = 0;
  *held = false;
  if (s == SQLITE_ROW) {
    const unsigned char *h = sqlite3_column_text(st, 0);
    snprintf(holder, GTASK_ID_SIZE, "%s", h ? (const char *)h : "");
    until = sqlite3_column_int64(st, 1);
    *held = true;
  }
  sqlite3_reset(st);
  if (s != SQLITE_ROW)
    return s == SQLITE_DONE ? 0 : sq_err(s);
  if (until != 0)
    return 0; /* a TTL: held until expires_ms, which the query checked */
  gtask_status status = 0;
  int rc = read_row(be, c->msg->queue, holder, &status, NULL, NULL, NULL);
  if (rc == GTASK_ENOTFOUND) {
    *held = false;
    return 0;
  }
  *held = rc == 0 && !is_final(status);
  return rc;
}

/* Claims in order, in one transaction (a later claim sees what earlier ones
 * took): an id with a record, or a key a live task holds, is a duplicate;
 * else the id is recorded PENDING and takes the key. */
static int sq_claim(void *impl, gtask_claim *cs, size_t n) {
  sqlite_backend *be = impl;
  if (n > 0 && cs == NULL)
    return GTASK_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (cs[i].msg == NULL || cs[i].msg->queue == NULL || cs[i].unique_ttl_ms < 0)
      return GTASK_EINVAL;
  if (n == 0)
    return 0;
  /* The outcomes, reported only once the transaction committed. */
  gtask_claim *out = calloc(n, sizeof(*out));
  if (out == NULL)
    return GTASK_ENOMEM;
  int64_t now = now_ms();
  pthread_mutex_lock(&be->mu);
  int rc = tx_begin(be, now);
  if (rc == 0) {
    for (size_t i = 0; i < n && rc == 0; i++) {
      const gtask_claim *c = &cs[i];
      gtask_status status;
      if ((rc = expire_row(be, c->msg, now)) != 0)
        break;
      rc = read_row(be, c->msg->queue, c->msg->id, &status, NULL, NULL, NULL);
      if (rc == 0) { /* the id is taken */
        out[i].duplicate = true;
        snprintf(out[i].existing, GTASK_ID_SIZE, "%s", c->msg->id);
        continue;
      }
      if (rc != GTASK_ENOTFOUND)
        break;
      rc = 0;
      bool held = false;
      if (c->unique_key != NULL && (rc = key_held(be, c, now, &held, out[i].existing)) != 0)
        break;
      if (held) {
        out[i].duplicate = true;
        continue;
      }
      out[i].existing[0] = '\0';
      bind_key(be->pending, c->msg);
      sqlite3_bind_int64(be->pending, 3, now + be->ttl_ms);
      if ((rc = step_done(be->pending)) != 0 || c->unique_key == NULL)
        continue;
      sqlite3_stmt *st = be->lock_put;
      int64_t until = c->unique_ttl_ms > 0 ? now + c->unique_ttl_ms : 0;
      sqlite3_bind_text(st, 1, c->msg->queue, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 2, c->unique_key, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 3, c->msg->id, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 4, until);
      sqlite3_bind_int64(st, 5, until != 0 ? until : now + be->ttl_ms);
      rc = step_done(st);
    }
    rc = tx_end(be, rc);
  }
  pthread_mutex_unlock(&be->mu);
  if (rc == 0)
    for (size_t i = 0; i < n; i++) {
      cs[i].duplicate = out[i].duplicate;
      memcpy(cs[i].existing, out[i].existing, GTASK_ID_SIZE);
    }
  free(out);
  return rc;
}

/* ---------------------------------------------------------------- reads */

/* Reads a row with the mutex held: GTASK_ENOTFOUND when there is none (or it
 * expired).  *result (if result is non-NULL) receives a malloc()ed,
 * NUL-terminated copy of the result, NULL if there is none. */
static int read_row(sqlite_backend *be, const char *queue, const char *id, gtask_status *status,
                    uint32_t *attempts, char **result, size_t *len) {
  sqlite3_stmt *st = be->get;
  sqlite3_bind_text(st, 1, queue, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, now_ms());
  int s = sqlite3_step(st);
  int rc = 0;
  if (s == SQLITE_ROW) {
    *status = status_of(sqlite3_column_text(st, 0));
    if (attempts)
      *attempts = (uint32_t)sqlite3_column_int64(st, 1);
    const void *blob = sqlite3_column_blob(st, 2);
    size_t n = (size_t)sqlite3_column_bytes(st, 2);
    if (result) {
      *result = NULL;
      if (blob != NULL && (*result = malloc(n + 1)) == NULL) {
        rc = GTASK_ENOMEM;
      } else if (blob != NULL) {
        memcpy(*result, blob, n);
        (*result)[n] = '\0';
      }
    }
    if (len)
      *len = rc == 0 && blob != NULL ? n : 0;
  } else {
    rc = s == SQLITE_DONE ? GTASK_ENOTFOUND : sq_err(s);
  }
  sqlite3_reset(st);
  return rc;
}

static int sq_get(void *impl, const char *queue, const char *id, gtask_status *status,
                  uint32_t *attempts, char **result, size_t *len) {
  sqlite_backend *be = impl;
  if (queue == NULL || id == NULL || status == NULL)
    return GTASK_EINVAL;
  pthread_mutex_lock(&be->mu);
  int rc = read_row(be, queue, id, status, attempts, result, len);
  pthread_mutex_unlock(&be->mu);
  return rc;
}

/* Waits on the condition variable until deadline (monotonic ms; -1: none)
 * or for at most step_ms, whichever comes first.  Mutex held. */
static void wait_step(sqlite_backend *be, int64_t deadline, int64_t step_ms) {
  int64_t until = mono_ms() + step_ms;
  if (deadline >= 0 && deadline < until)
    until = deadline;
  struct timespec ts = {(time_t)(until / 1000), (long)(until % 1000) * 1000000L};
  uint64_t gen = be->gen;
  while (be->gen == gen && pthread_cond_timedwait(&be->cv, &be->mu, &ts) != ETIMEDOUT) {
  }
}

static int sq_wait(void *impl, const char *queue, const char *id, int64_t timeout_ms, bool known,
                   char **result, size_t *len) {
  sqlite_backend *be = impl;
  if (queue == NULL || id == NULL)
    return GTASK_EINVAL;
  int64_t deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
  int64_t poll = POLL_FIRST_MS;
  pthread_mutex_lock(&be->mu);
  int rc;
  for (;;) {
    gtask_status s = 0;
    char *r = NULL;
    size_t n = 0;
    rc = read_row(be, queue, id, &s, NULL, result ? &r : NULL, &n);
    if (rc == 0 && is_final(s)) {
      if (result) {
        *result = r;
        if (len)
          *len = n;
      }
      break;
    }
    free(r);
    if (rc == GTASK_ENOTFOUND && !known)
      break; /* unknown (or expired): at once */
    if (rc != 0 && rc != GTASK_ENOTFOUND)
      break;
    if (deadline >= 0 && mono_ms() >= deadline) {
      rc = rc == GTASK_ENOTFOUND ? GTASK_ENOTFOUND : GTASK_ETIMEDOUT;
      break;
    }
    /* Woken at once by a final store in this process; else the poll for
     * another process's writes, backing off. */
    wait_step(be, deadline, poll);
    poll = poll * 2 < POLL_MAX_MS ? poll * 2 : POLL_MAX_MS;
  }
  pthread_mutex_unlock(&be->mu);
  return rc;
}

/* ---------------------------------------------------------------- life */

static void sq_destroy(void *impl) {
  sqlite_backend *be = impl;
  if (be == NULL)
    return;
  sqlite3_stmt *sts[] = {be->sweep, be->expire,     be->get,      be->pending,
                         be->started, be->store,    be->reset,    be->lock_sweep,
                         be->lock_get, be->lock_put};
  for (size_t i = 0; i < sizeof(sts) / sizeof(sts[0]); i++)
    sqlite3_finalize(sts[i]);
  sqlite3_close(be->db);
  pthread_cond_destroy(&be->cv);
  pthread_mutex_destroy(&be->mu);
  free(be);
}

static const gtask_backend_ops sqlite_ops = {
    .abi = GTASK_EXTEND_ABI,
    .name = "sqlite",
    .pending = sq_pending,
    .started = sq_started,
    .store = sq_store,
    .get = sq_get,
    .wait = sq_wait,
    .reset = sq_reset,
    .destroy = sq_destroy,
    .claim = sq_claim,
};

static int prepare(sqlite_backend *be, const char *sql, sqlite3_stmt **out) {
  return sq_err(sqlite3_prepare_v3(be->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL));
}

int sqlite_backend_new(gtask_backend **out, const char *path, int64_t ttl_ms) {
  if (out == NULL || path == NULL)
    return GTASK_EINVAL;
  *out = NULL;
  sqlite_backend *be = calloc(1, sizeof(*be));
  if (be == NULL)
    return GTASK_ENOMEM;
  be->ttl_ms = ttl_ms > 0 ? ttl_ms : DEFAULT_TTL_MS;
  pthread_mutex_init(&be->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&be->cv, &ca);
  pthread_condattr_destroy(&ca);

  /* NOMUTEX: be->mu serialises every use of the connection. */
  int rc = sqlite3_open_v2(path, &be->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  rc = rc == SQLITE_OK ? 0 : GTASK_ECONN;
  if (rc == 0)
    rc = sq_err(sqlite3_busy_timeout(be->db, 5000));
  if (rc == 0 && (rc = exec(be, SCHEMA)) != 0)
    rc = rc == GTASK_ENOMEM ? rc : GTASK_ECONN;
  if (rc == 0)
    rc = prepare(be, SQL_SWEEP, &be->sweep);
  if (rc == 0)
    rc = prepare(be, SQL_EXPIRE, &be->expire);
  if (rc == 0)
    rc = prepare(be, SQL_LOCK_SWEEP, &be->lock_sweep);
  if (rc == 0)
    rc = prepare(be, SQL_LOCK_GET, &be->lock_get);
  if (rc == 0)
    rc = prepare(be, SQL_LOCK_PUT, &be->lock_put);
  if (rc == 0)
    rc = prepare(be, SQL_GET, &be->get);
  if (rc == 0)
    rc = prepare(be, SQL_PENDING, &be->pending);
  if (rc == 0)
    rc = prepare(be, SQL_STARTED, &be->started);
  if (rc == 0)
    rc = prepare(be, SQL_STORE, &be->store);
  if (rc == 0)
    rc = prepare(be, SQL_RESET, &be->reset);
  if (rc == 0 && (rc = gtask_backend_new(out, &sqlite_ops, be)) == 0)
    return 0;
  sq_destroy(be);
  return rc;
}
