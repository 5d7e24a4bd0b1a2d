/* worker_fixture.h -- the set-up the integration tests share: a Redis broker
 * and backend on one URL, and a gtask_server running on a thread of its own.
 *
 *     gt_redis *r = gt_redis_start(NULL);
 *     gtask_broker *broker;
 *     gtask_backend *backend;
 *     gt_redis_pair(gt_redis_url(r), &broker, &backend);
 *     gtask_server *s = gtask_server_new(broker, backend);
 *     ASSERT_OK(GTASK_REG(s, add));            // the test's own handlers
 *     gt_worker w;
 *     gt_worker_start(&w, s, 4);               // gtask_server_run(s, 4)
 *     ...
 *     ASSERT_OK(gt_worker_stop(&w));           // what gtask_server_run returned
 *
 * Failures are failed assertions (the test ends), as in the tests themselves.
 * Start and stop a worker from the test's main thread. */
#ifndef GTASK_TEST_WORKER_FIXTURE_H
#define GTASK_TEST_WORKER_FIXTURE_H

#include <gtask/gtask.h>

#include <pthread.h>
#include <stdatomic.h>

/* A Redis broker and backend on url (no password, the URL's db), each with
 * its own pool.  Free them with gtask_broker_free() and gtask_backend_free(). */
void gt_redis_pair(const char *url, gtask_broker **broker, gtask_backend **backend);

/* A server run by gtask_server_run on a thread of its own. */
typedef struct gt_worker {
  gtask_server *server; /* not owned: free it after gt_worker_stop() */
  int nexec;            /* gtask_server_run's executor count */
  pthread_t thread;
  int rc;              /* what gtask_server_run returned, once stopped */
  atomic_bool stopped; /* gtask_server_run has returned */
} gt_worker;

/* Runs gtask_server_run(server, nexec) on a new thread. */
void gt_worker_start(gt_worker *w, gtask_server *server, int nexec);

/* gtask_server_shutdown(), then waits for the thread; returns what
 * gtask_server_run returned. */
int gt_worker_stop(gt_worker *w);

/* Waits for the thread of a worker that stops by itself (wait for
 * w->stopped first); returns what gtask_server_run returned. */
int gt_worker_join(gt_worker *w);

#endif /* GTASK_TEST_WORKER_FIXTURE_H */
