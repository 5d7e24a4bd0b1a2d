/* cluster_fixture.c -- a private Redis Cluster on loopback: see cluster_fixture.h. */
#include "cluster_fixture.h"

#include "proc.h"
#include "tls_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NODES 24

struct gt_cluster {
  gt_redis *node[MAX_NODES];
  int n;
  char url[MAX_NODES * 24 + 1024]; /* with TLS, the certificates' paths too */
};

const char *gt_cluster_url(const gt_cluster *c) { return c->url; }
int gt_cluster_size(const gt_cluster *c) { return c->n; }
gt_redis *gt_cluster_node(const gt_cluster *c, int i) { return i >= 0 && i < c->n ? c->node[i] : NULL; }
redisContext *gt_cluster_connect(const gt_cluster *c, int i) { return gt_redis_connect(c->node[i]); }

void gt_cluster_stop(gt_cluster *c) {
  if (c == NULL)
    return;
  for (int i = 0; i < c->n; i++)
    gt_redis_stop(c->node[i]);
  free(c);
}

/* The port clients use: the TLS one for a TLS node. */
static int client_port(gt_redis *r) {
  return gt_redis_tls_port(r) > 0 ? gt_redis_tls_port(r) : gt_redis_port(r);
}

/* A short-lived connection to node i, or NULL if it is down. */
static redisContext *quiet_connect(const gt_cluster *c, int i) {
  if (gt_redis_pid(c->node[i]) == 0)
    return NULL;
  return gt_redis_connect_timeout(c->node[i], 1000);
}

/* The node of c listening on port, or NULL. */
static gt_redis *node_by_port(const gt_cluster *c, long port) {
  for (int i = 0; i < c->n; i++)
    if (client_port(c->node[i]) == port)
      return c->node[i];
  return NULL;
}

/* The value of field name in a flat [name, value, ...] reply, or NULL. */
static const redisReply *field(const redisReply *m, const char *name) {
  if (m == NULL || m->type != REDIS_REPLY_ARRAY)
    return NULL;
  for (size_t k = 0; k + 1 < m->elements; k += 2)
    if (m->element[k]->type == REDIS_REPLY_STRING && strcmp(m->element[k]->str, name) == 0)
      return m->element[k + 1];
  return NULL;
}

/* The client port of every slot's master (0: none) as node i sees it
 * (CLUSTER SHARDS: the TLS port of a TLS node, whatever the asking
 * connection), and whether it says cluster_state:ok.  -1 if it cannot be
 * asked. */
static int node_view(const gt_cluster *c, int i, int *port_of_slot, bool *ok) {
  redisContext *ctx = quiet_connect(c, i);
  if (ctx == NULL)
    return -1;
  redisReply *info = redisCommand(ctx, "CLUSTER INFO");
  *ok = info && info->type == REDIS_REPLY_STRING && strstr(info->str, "cluster_state:ok") != NULL;
  if (info)
    freeReplyObject(info);
  /* A replica counts once it has synced with its master: before that, a
   * failover would promote a node without the master's data. */
  info = redisCommand(ctx, "INFO replication");
  if (info && info->type == REDIS_REPLY_STRING && strstr(info->str, "role:slave") != NULL &&
      strstr(info->str, "master_link_status:up") == NULL)
    *ok = false;
  if (info)
    freeReplyObject(info);
  memset(port_of_slot, 0, 16384 * sizeof(int));
  redisReply *r = redisCommand(ctx, "CLUSTER SHARDS");
  int rc = r && r->type == REDIS_REPLY_ARRAY ? 0 : -1;
  for (size_t k = 0; rc == 0 && k < r->elements; k++) {
    const redisReply *slots = field(r->element[k], "slots"), *nodes = field(r->element[k], "nodes");
    if (slots == NULL || nodes == NULL || nodes->type != REDIS_REPLY_ARRAY)
      continue;
    int port = 0;
    for (size_t j = 0; j < nodes->elements && port == 0; j++) {
      const redisReply *role = field(nodes->element[j], "role");
      if (role == NULL || role->type != REDIS_REPLY_STRING || strcmp(role->str, "master") != 0)
        continue;
      const redisReply *p = field(nodes->element[j], "tls-port");
      if (p == NULL)
        p = field(nodes->element[j], "port");
      if (p != NULL && p->type == REDIS_REPLY_INTEGER)
        port = (int)p->integer;
    }
    for (size_t j = 0; j + 1 < slots->elements; j += 2)
      for (long long s = slots->element[j]->integer; s <= slots->element[j + 1]->integer && s < 16384; s++)
        port_of_slot[s] = port;
  }
  if (r)
    freeReplyObject(r);
  redisFree(ctx);
  return rc;
}

int gt_cluster_wait_ok(const gt_cluster *c, int64_t ms) {
  int64_t deadline = gt_mono_ms() + gt_scaled_ms(ms);
  int *first = malloc(16384 * sizeof(int)), *view = malloc(16384 * sizeof(int));
  int rc = -1;
  while (first && view && rc != 0 && gt_mono_ms() < deadline) {
    bool all = true, seen = false;
    for (int i = 0; i < c->n && all; i++) {
      bool ok;
      if (gt_redis_pid(c->node[i]) == 0)
        continue; /* killed by the test */
      if (node_view(c, i, seen ? view : first, &ok) != 0 || !ok) {
        all = false;
        break;
      }
      if (seen && memcmp(first, view, 16384 * sizeof(int)) != 0)
        all = false;
      seen = true;
    }
    for (int s = 0; all && s < 16384; s++)
      if (first[s] == 0)
        all = false;
    if (all && seen)
      rc = 0;
    else
      gt_sleep_ms(50);
  }
  free(first);
  free(view);
  return rc;
}

static gt_cluster *start(int masters, int replicas, const char *extra_conf, const gt_certs *certs);

gt_cluster *gt_cluster_start(int masters, int replicas) {
  return start(masters, replicas, NULL, NULL);
}

gt_cluster *gt_cluster_start_conf(int masters, int replicas, const char *extra_conf) {
  return start(masters, replicas, extra_conf, NULL);
}

gt_cluster *gt_cluster_start_tls(int masters, int replicas, const gt_certs *certs) {
  return start(masters, replicas, "tls-cluster yes\ntls-replication yes\n", certs);
}

static gt_cluster *start(int masters, int replicas, const char *extra_conf, const gt_certs *certs) {
  if (masters < 1 || masters > 8 || replicas < 0 || replicas > 2) {
    fprintf(stderr, "gt_cluster: 1..8 masters and 0..2 replicas each\n");
    return NULL;
  }
  gt_cluster *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return NULL;
  int total = masters * (1 + replicas);
  char conf[1024];
  snprintf(conf, sizeof(conf),
           "cluster-node-timeout %lld\n"
           "cluster-replica-validity-factor 0\n"
           "cluster-allow-replica-migration no\n"
           "repl-diskless-sync-delay 0\n" /* replicas sync at once (the default waits 5 s) */
           "%s",
           (long long)gt_scaled_ms(2000), extra_conf ? extra_conf : "");
  gt_redis_opts o = {.cluster = true, .extra_conf = conf, .certs = certs};
  for (int i = 0; i < total; i++) {
    if ((c->node[i] = gt_redis_start_opts(&o)) == NULL) {
      gt_cluster_stop(c);
      return NULL;
    }
    c->n++;
  }
  size_t off = (size_t)snprintf(c->url, sizeof(c->url), "redis-cluster://");
  for (int i = 0; i < c->n; i++)
    off += (size_t)snprintf(c->url + off, sizeof(c->url) - off, "%s127.0.0.1:%d", i ? "," : "",
                            client_port(c->node[i]));
  if (certs) {
    char nodes[MAX_NODES * 24];
    snprintf(nodes, sizeof(nodes), "%s", c->url + strlen("redis-cluster://"));
    int len = snprintf(c->url, sizeof(c->url), "rediss-cluster://%.*s?cacert=%s&cert=%s&key=%s",
                       (int)sizeof(nodes) - 1, nodes, certs->ca, certs->client_cert,
                       certs->client_key);
    if (len < 0 || (size_t)len >= sizeof(c->url)) {
      fprintf(stderr, "gt_cluster: the certificates' paths are too long for the URL\n");
      gt_cluster_stop(c);
      return NULL;
    }
  }

  const char *argv[MAX_NODES + 16];
  char addr[MAX_NODES][32], nrep[8];
  int k = 0;
  argv[k++] = "redis-cli";
  if (certs) {
    argv[k++] = "--tls";
    argv[k++] = "--cacert";
    argv[k++] = certs->ca;
    argv[k++] = "--cert";
    argv[k++] = certs->client_cert;
    argv[k++] = "--key";
    argv[k++] = certs->client_key;
  }
  argv[k++] = "--cluster";
  argv[k++] = "create";
  for (int i = 0; i < c->n; i++) {
    snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", client_port(c->node[i]));
    argv[k++] = addr[i];
  }
  snprintf(nrep, sizeof(nrep), "%d", replicas);
  argv[k++] = "--cluster-replicas";
  argv[k++] = nrep;
  argv[k++] = "--cluster-yes";
  argv[k] = NULL;
  char out[8192];
  int st = gt_run(argv, out, sizeof(out));
  if (st != 0) {
    fprintf(stderr, "gt_cluster: redis-cli --cluster create failed (%d):\n%s\n", st, out);
    gt_cluster_stop(c);
    return NULL;
  }
  if (gt_cluster_wait_ok(c, 20000) != 0) {
    fprintf(stderr, "gt_cluster: the cluster did not reach cluster_state:ok\n");
    gt_cluster_stop(c);
    return NULL;
  }
  return c;
}

int gt_cluster_keyslot(const gt_cluster *c, const char *key) {
  for (int i = 0; i < c->n; i++) {
    redisContext *ctx = quiet_connect(c, i);
    if (ctx == NULL)
      continue;
    redisReply *r = redisCommand(ctx, "CLUSTER KEYSLOT %s", key);
    int slot = r && r->type == REDIS_REPLY_INTEGER ? (int)r->integer : -1;
    if (r)
      freeReplyObject(r);
    redisFree(ctx);
    return slot;
  }
  return -1;
}

gt_redis *gt_cluster_master_of(const gt_cluster *c, int slot) {
  int *view = malloc(16384 * sizeof(int));
  gt_redis *m = NULL;
  for (int i = 0; view && i < c->n && m == NULL; i++) {
    bool ok;
    if (slot >= 0 && slot < 16384 && node_view(c, i, view, &ok) == 0)
      m = node_by_port(c, view[slot]);
  }
  free(view);
  return m;
}

/* The node id of a node (CLUSTER MYID) into id. */
static int node_id(redisContext *ctx, char *id, size_t size) {
  redisReply *r = redisCommand(ctx, "CLUSTER MYID");
  int rc = r && r->type == REDIS_REPLY_STRING ? 0 : -1;
  if (rc == 0)
    snprintf(id, size, "%s", r->str);
  if (r)
    freeReplyObject(r);
  return rc;
}

/* Runs a command on ctx and checks it did not fail. */
static int ok_cmd(redisContext *ctx, const char *what, redisReply *r) {
  int rc = r && r->type != REDIS_REPLY_ERROR ? 0 : -1;
  if (rc)
    fprintf(stderr, "gt_cluster: %s: %s\n", what, r ? r->str : ctx->errstr);
  if (r)
    freeReplyObject(r);
  return rc;
}

int gt_cluster_move_slot(const gt_cluster *c, int slot, gt_redis *dst, int batch, int pause_ms) {
  return gt_cluster_migrate_slot(c, slot, dst, batch, pause_ms, true);
}

/* MIGRATE keys[0..n) from s to dst (n > 0). */
static int migrate_keys(redisContext *s, gt_redis *dst, const char *const *keys, size_t n) {
  /* MIGRATE host port "" 0 timeout KEYS k1 k2 ... */
  const char **argv = calloc(n + 8, sizeof(*argv));
  if (!argv)
    return -1;
  char port[16];
  snprintf(port, sizeof(port), "%d", gt_redis_port(dst));
  size_t k = 0;
  argv[k++] = "MIGRATE";
  argv[k++] = "127.0.0.1";
  argv[k++] = port;
  argv[k++] = "";
  argv[k++] = "0";
  argv[k++] = "5000";
  argv[k++] = "KEYS";
  for (size_t j = 0; j < n; j++)
    argv[k++] = keys[j];
  int rc = ok_cmd(s, "MIGRATE", redisCommandArgv(s, (int)k, argv, NULL));
  free(argv);
  return rc;
}

static int migrate(const gt_cluster *c, int slot, gt_redis *dst, int batch, int pause_ms, bool finish,
                   const char *const *only, size_t nonly);

int gt_cluster_migrate_slot(const gt_cluster *c, int slot, gt_redis *dst, int batch, int pause_ms,
                            bool finish) {
  return migrate(c, slot, dst, batch, pause_ms, finish, NULL, 0);
}

int gt_cluster_migrate_keys(const gt_cluster *c, int slot, gt_redis *dst, const char *const *keys,
                            size_t n) {
  return migrate(c, slot, dst, 0, 0, false, keys, n);
}

/* The migration of slot to dst (see cluster_fixture.h): with `only`, just
 * those keys, the slot left in migration. */
static int migrate(const gt_cluster *c, int slot, gt_redis *dst, int batch, int pause_ms, bool finish,
                   const char *const *only, size_t nonly) {
  gt_redis *src = gt_cluster_master_of(c, slot);
  if (src == NULL || src == dst) {
    fprintf(stderr, "gt_cluster: slot %d: no master, or already on the destination\n", slot);
    return -1;
  }
  redisContext *s = gt_redis_connect(src), *d = gt_redis_connect(dst);
  char sid[64], did[64];
  int rc = s && d && node_id(s, sid, sizeof(sid)) == 0 && node_id(d, did, sizeof(did)) == 0 ? 0 : -1;
  /* A second call (finish) finds the slot in migration already. */
  if (rc == 0)
    rc = ok_cmd(d, "SETSLOT IMPORTING", redisCommand(d, "CLUSTER SETSLOT %d IMPORTING %s", slot, sid));
  if (rc == 0)
    rc = ok_cmd(s, "SETSLOT MIGRATING", redisCommand(s, "CLUSTER SETSLOT %d MIGRATING %s", slot, did));
  if (rc == 0 && only && nonly > 0)
    rc = migrate_keys(s, dst, only, nonly);
  while (rc == 0 && !only) {
    redisReply *keys = redisCommand(s, "CLUSTER GETKEYSINSLOT %d %d", slot, batch);
    if (!keys || keys->type != REDIS_REPLY_ARRAY) {
      rc = ok_cmd(s, "GETKEYSINSLOT", keys);
      break;
    }
    size_t n = keys->elements;
    if (n > 0) {
      const char **names = calloc(n, sizeof(*names));
      for (size_t j = 0; names && j < n; j++)
        names[j] = keys->element[j]->str;
      rc = names ? migrate_keys(s, dst, names, n) : -1;
      free(names);
    }
    freeReplyObject(keys);
    if (n == 0)
      break;
    if (pause_ms > 0)
      gt_sleep_ms(pause_ms);
  }
  /* The destination first (it then owns the slot whatever happens next), then
   * the source, then everyone else. */
  if (rc == 0 && !finish) {
    redisFree(s);
    redisFree(d);
    return 0;
  }
  if (rc == 0)
    rc = ok_cmd(d, "SETSLOT NODE", redisCommand(d, "CLUSTER SETSLOT %d NODE %s", slot, did));
  if (rc == 0)
    rc = ok_cmd(s, "SETSLOT NODE", redisCommand(s, "CLUSTER SETSLOT %d NODE %s", slot, did));
  for (int i = 0; rc == 0 && i < c->n; i++) {
    if (c->node[i] == src || c->node[i] == dst)
      continue;
    redisContext *o = quiet_connect(c, i);
    if (o == NULL)
      continue;
    redisReply *r = redisCommand(o, "CLUSTER SETSLOT %d NODE %s", slot, did);
    if (r) /* a replica refuses: it learns from its master */
      freeReplyObject(r);
    redisFree(o);
  }
  if (s)
    redisFree(s);
  if (d)
    redisFree(d);
  return rc;
}
