/* worker_fixture.c -- a Redis broker and backend pair, and a server on a
 * thread: the set-up the integration tests share (worker_fixture.h). */
#include "worker_fixture.h"

#include "test.h"

void gt_redis_pair(const char *url, gtask_broker **broker, gtask_backend **backend) {
  gtask_redis_conf *conf;
  ASSERT_OK(gtask_redis_conf_new(&conf, url, NULL, -1));
  ASSERT_OK(gtask_broker_redis_new(broker, conf));
  ASSERT_OK(gtask_backend_redis_new(backend, conf));
  gtask_redis_conf_free(conf);
}

static void *run(void *arg) {
  gt_worker *w = arg;
  w->rc = gtask_server_run(w->server, w->nexec);
  atomic_store(&w->stopped, true);
  return NULL;
}

void gt_worker_start(gt_worker *w, gtask_server *server, int nexec) {
  ASSERT_NOT_NULL(server);
  w->server = server;
  w->nexec = nexec;
  w->rc = 0;
  atomic_store(&w->stopped, false);
  ASSERT_EQ(pthread_create(&w->thread, NULL, run, w), 0);
}

int gt_worker_stop(gt_worker *w) {
  gtask_server_shutdown(w->server);
  return gt_worker_join(w);
}

int gt_worker_join(gt_worker *w) {
  ASSERT_EQ(pthread_join(w->thread, NULL), 0);
  return w->rc;
}
