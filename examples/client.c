/* examples/client.c -- g_task's QuickStart client in C: send add(1, 2), print
 * the task id, wait for the result without polling and print it (3).
 *
 *   ./client [redis-url]      (default: $GTASK_REDIS_URL, else 127.0.0.1:6379/0)
 */
#include <gtask/gtask.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  const char *url = argc > 1 ? argv[1] : getenv("GTASK_REDIS_URL");

  gtask_redis_conf *conf;
  if (gtask_redis_conf_new(&conf, url, NULL, -1) != 0) {
    fprintf(stderr, "client: %s\n", gtask_last_error());
    return 2;
  }
  gtask_broker *broker;
  gtask_backend *backend;
  if (gtask_broker_redis_new(&broker, conf) != 0 || gtask_backend_redis_new(&backend, conf) != 0) {
    fprintf(stderr, "client: %s\n", gtask_last_error());
    return 5;
  }
  gtask_redis_conf_free(conf);
  gtask_client *cli = gtask_client_new(broker, backend);
  gtask_broker_free(broker);
  gtask_backend_free(backend);

  gtask_send_conf *add = gtask_send_conf_new("add");
  char id[GTASK_ID_SIZE];
  if (GTASK_SEND(cli, add, id, gtask_int64(1), gtask_int64(2)) != 0) {
    fprintf(stderr, "client: %s\n", gtask_client_errmsg(cli));
    return 1;
  }
  printf("%s\n", id);

  gtask_result *res;
  int rc = gtask_client_wait(cli, id, 10000, &res);
  if (rc != 0) {
    fprintf(stderr, "client: %s\n", gtask_client_errmsg(cli));
  } else if (res->status == GTASK_SUCCESS && res->nvalues == 1) {
    printf("%" PRId64 "\n", res->values[0].v.i);
  } else {
    fprintf(stderr, "client: task %s: %s\n", gtask_status_name(res->status),
            res->error ? res->error : "");
    rc = 1;
  }
  gtask_result_free(res);
  gtask_send_conf_free(add);
  gtask_client_free(cli);
  return rc == 0 ? 0 : 1;
}
