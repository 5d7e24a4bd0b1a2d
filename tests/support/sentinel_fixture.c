/* sentinel_fixture.c -- starts, queries, fails over and stops a Sentinel set.
 *
 * See sentinel_fixture.h for the contract.  Every process is a gt_redis, so port
 * probing, readiness, restarts and cleanup at exit are redis_fixture's.  This
 * file adds the topology and the waits.  Each wait polls (50 ms apart) a check
 * that asks every running process afresh over its plain connection (TCP, or the
 * unix socket with TLS), with a bounded timeout per command, so that a dead or
 * stopped process makes the check fail rather than hang; the check writes what
 * it is still waiting for into a buffer that is printed if the deadline passes.
 */
#define _GNU_SOURCE
#include "sentinel_fixture.h"

#include "proc.h"
#include "tls_fixture.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GT_SENTINEL_WAIT_MS 20000
#define GT_SENTINEL_POLL_MS 50
#define GT_SENTINEL_CMD_MS 1000
#define GT_SENTINEL_NAME_MAX 64

struct gt_sentinel {
  char name[GT_SENTINEL_NAME_MAX]; /* the master name */
  const gt_certs *certs; /* non-NULL: everything over TLS */
  int quorum;            /* a majority of the sentinels asked for */
  int nnodes;            /* data nodes started: 1 + replicas */
  int nsentinels;        /* sentinels started */
  gt_redis **nodes;      /* [nnodes]; node 0 started as the master */
  gt_redis **sentinels;  /* [nsentinels] */
  char url[1024];
};

typedef struct why {
  char text[1024]; /* what the last check was still waiting for */
} why;

static void say(why *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(why *w, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->text, sizeof(w->text), fmt, ap);
  va_end(ap);
}

/* ---------------------------------------------------------------- queries */

/* The port clients use: the TLS port with TLS. */
static int port_of(const gt_redis *r) {
  int tls = gt_redis_tls_port(r);
  return tls > 0 ? tls : gt_redis_port(r);
}

static bool running(const gt_redis *r) { return gt_redis_pid(r) > 0; }

/* One command on a fresh bounded connection; NULL if r cannot be reached. */
static redisReply *ask(const gt_redis *r, const char *fmt, ...) {
  redisContext *c = gt_redis_connect_timeout(r, gt_scaled_ms(GT_SENTINEL_CMD_MS));
  if (c == NULL)
    return NULL;
  va_list ap;
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(c, fmt, ap);
  va_end(ap);
  redisFree(c);
  return rep;
}

/* The value of "key:" in an INFO reply, copied into buf ("" if absent). */
static const char *info_field(const redisReply *rep, const char *key, char *buf, size_t size) {
  buf[0] = '\0';
  if (rep == NULL || rep->type != REDIS_REPLY_STRING)
    return buf;
  size_t klen = strlen(key);
  for (const char *p = rep->str; p != NULL && *p != '\0';) {
    if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
      const char *v = p + klen + 1;
      size_t n = strcspn(v, "\r\n");
      snprintf(buf, size, "%.*s", (int)n, v);
      return buf;
    }
    p = strchr(p, '\n');
    if (p != NULL)
      p++;
  }
  return buf;
}

/* The value of key in one entry of SENTINEL replicas / sentinels (a flat array
 * of field, value, ...), or "". */
static const char *entry_field(const redisReply *entry, const char *key) {
  if (entry == NULL || entry->type != REDIS_REPLY_ARRAY)
    return "";
  for (size_t i = 0; i + 1 < entry->elements; i += 2) {
    const redisReply *k = entry->element[i], *v = entry->element[i + 1];
    if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
        strcmp(k->str, key) == 0)
      return v->str;
  }
  return "";
}

static bool flags_down(const char *flags) {
  return strstr(flags, "s_down") != NULL || strstr(flags, "o_down") != NULL ||
         strstr(flags, "disconnected") != NULL;
}

/* The master port sentinel r names, or -1. */
static int sentinel_says(const gt_redis *r, const char *name) {
  redisReply *rep = ask(r, "SENTINEL get-master-addr-by-name %s", name);
  int port = -1;
  if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
      rep->element[1]->type == REDIS_REPLY_STRING)
    port = (int)strtol(rep->element[1]->str, NULL, 10);
  freeReplyObject(rep);
  return port;
}

/* The master port every running sentinel names, or -1 (with the reason). */
static int agreed_master(const gt_sentinel *s, why *w) {
  int agreed = -1, asked = 0;
  for (int i = 0; i < s->nsentinels; i++) {
    if (!running(s->sentinels[i]))
      continue;
    int port = sentinel_says(s->sentinels[i], s->name);
    if (port < 0) {
      say(w, "sentinel %d (port %d) does not answer get-master-addr-by-name %s", i,
          port_of(s->sentinels[i]), s->name);
      return -1;
    }
    if (asked > 0 && port != agreed) {
      say(w, "sentinels disagree on the master: port %d, and %d at sentinel %d", agreed, port,
          i);
      return -1;
    }
    agreed = port;
    asked++;
  }
  if (asked == 0)
    say(w, "no sentinel is running");
  return agreed;
}

static int node_by_port(const gt_sentinel *s, int port) {
  for (int i = 0; i < s->nnodes; i++)
    if (port_of(s->nodes[i]) == port)
      return i;
  return -1;
}

/* The role a node reports in INFO replication ("master", "slave"), and the
 * master port and link status of a replica. */
typedef struct node_state {
  char role[16];
  int master_port;
  bool link_up;
} node_state;

static bool node_info(const gt_redis *r, node_state *st) {
  memset(st, 0, sizeof(*st));
  redisReply *rep = ask(r, "INFO replication");
  bool ok = rep != NULL && rep->type == REDIS_REPLY_STRING;
  if (ok) {
    char buf[64];
    info_field(rep, "role", st->role, sizeof(st->role));
    st->master_port = (int)strtol(info_field(rep, "master_port", buf, sizeof(buf)), NULL, 10);
    st->link_up = strcmp(info_field(rep, "master_link_status", buf, sizeof(buf)), "up") == 0;
  }
  freeReplyObject(rep);
  return ok;
}

/* ---------------------------------------------------------------- checks */

/* The check of gt_sentinel_wait_new_master(). */
static bool new_master_ok(const gt_sentinel *s, int old_port, why *w) {
  int m = agreed_master(s, w);
  if (m < 0)
    return false;
  if (m == old_port) {
    say(w, "the sentinels still name port %d as the master", old_port);
    return false;
  }
  int idx = node_by_port(s, m);
  node_state st;
  if (idx < 0 || !running(s->nodes[idx]) || !node_info(s->nodes[idx], &st)) {
    say(w, "the sentinels name port %d, which is not a running node of the set", m);
    return false;
  }
  if (strcmp(st.role, "master") != 0) {
    say(w, "the new master, node %d (port %d), still reports role:%s", idx, m, st.role);
    return false;
  }
  return true;
}

/* True if a SENTINEL replicas/sentinels reply lists an instance on port that
 * is not down. */
static bool lists_up(const redisReply *rep, int port) {
  for (size_t j = 0; rep != NULL && rep->type == REDIS_REPLY_ARRAY && j < rep->elements; j++) {
    const redisReply *e = rep->element[j];
    if (strtol(entry_field(e, "port"), NULL, 10) == port && !flags_down(entry_field(e, "flags")))
      return true;
  }
  return false;
}

/* The check of gt_sentinel_wait_ready(). */
static bool ready_ok(const gt_sentinel *s, why *w) {
  int m = agreed_master(s, w);
  if (m < 0)
    return false;
  int midx = node_by_port(s, m);
  node_state st;
  if (midx < 0 || !running(s->nodes[midx]) || !node_info(s->nodes[midx], &st) ||
      strcmp(st.role, "master") != 0) {
    say(w, "the sentinels name port %d, which is not a running master of the set", m);
    return false;
  }
  for (int i = 0; i < s->nnodes; i++) {
    if (i == midx || !running(s->nodes[i]))
      continue;
    if (!node_info(s->nodes[i], &st)) {
      say(w, "node %d (port %d) does not answer INFO", i, port_of(s->nodes[i]));
      return false;
    }
    if (strcmp(st.role, "slave") != 0 || st.master_port != m || !st.link_up) {
      say(w, "node %d (port %d) reports role:%s master_port:%d master_link_status:%s, "
             "want a replica of port %d with its link up",
          i, port_of(s->nodes[i]), st.role, st.master_port, st.link_up ? "up" : "down", m);
      return false;
    }
  }
  for (int i = 0; i < s->nsentinels; i++) {
    if (!running(s->sentinels[i]))
      continue;
    redisReply *reps = ask(s->sentinels[i], "SENTINEL replicas %s", s->name);
    redisReply *sens = ask(s->sentinels[i], "SENTINEL sentinels %s", s->name);
    bool ok = reps != NULL && reps->type == REDIS_REPLY_ARRAY && sens != NULL &&
              sens->type == REDIS_REPLY_ARRAY;
    if (!ok)
      say(w, "sentinel %d (port %d) does not answer SENTINEL replicas/sentinels: %s", i,
          port_of(s->sentinels[i]),
          reps != NULL && reps->type == REDIS_REPLY_ERROR ? reps->str : "no reply");
    for (int j = 0; ok && j < s->nnodes; j++) {
      if (j == midx || !running(s->nodes[j]) || lists_up(reps, port_of(s->nodes[j])))
        continue;
      say(w, "sentinel %d (port %d) does not list node %d (port %d) as an up replica", i,
          port_of(s->sentinels[i]), j, port_of(s->nodes[j]));
      ok = false;
    }
    for (int j = 0; ok && j < s->nsentinels; j++) {
      if (j == i || !running(s->sentinels[j]) || lists_up(sens, port_of(s->sentinels[j])))
        continue;
      say(w, "sentinel %d (port %d) does not know sentinel %d (port %d) yet", i,
          port_of(s->sentinels[i]), j, port_of(s->sentinels[j]));
      ok = false;
    }
    freeReplyObject(reps);
    freeReplyObject(sens);
    if (!ok)
      return false;
  }
  return true;
}

/* The extra conf of a data node: a replica of master_port, or a master (<= 0). */
static void node_conf(const gt_sentinel *s, int master_port, char *buf, size_t size) {
  int n = snprintf(buf, size, "repl-diskless-sync-delay 0\n%s",
                   s->certs != NULL ? "tls-replication yes\n" : "");
  if (master_port > 0 && n > 0 && (size_t)n < size)
    snprintf(buf + n, size - (size_t)n, "replicaof 127.0.0.1 %d\n", master_port);
}

/* Makes each node's extra conf follow the topology the sentinels settled on
 * (the master without replicaof, the others replicas of it), so that a later
 * gt_redis_restart() of a node brings it back in its current role. */
static void follow_topology(const gt_sentinel *s, int master_port) {
  if (master_port <= 0)
    return; /* the sentinels just became unreachable: leave the confs as they are */
  for (int i = 0; i < s->nnodes; i++) {
    char conf[256];
    node_conf(s, port_of(s->nodes[i]) == master_port ? 0 : master_port, conf, sizeof(conf));
    gt_redis_set_extra_conf(s->nodes[i], conf);
  }
}

/* Polls check until it holds or gt_scaled_ms(GT_SENTINEL_WAIT_MS) pass. */
#define GT_WAIT(what, check)                                                              \
  do {                                                                                    \
    int64_t limit_ = gt_scaled_ms(GT_SENTINEL_WAIT_MS);                                   \
    int64_t deadline_ = gt_mono_ms() + limit_;                                            \
    for (;;) {                                                                            \
      if (check)                                                                          \
        break;                                                                            \
      if (gt_mono_ms() >= deadline_) {                                                    \
        fprintf(stderr, "gt_sentinel: %s: not done after %lld ms: %s\n", (what),          \
                (long long)limit_, w.text);                                               \
        return -1;                                                                        \
      }                                                                                   \
      gt_sleep_ms(GT_SENTINEL_POLL_MS);                                                   \
    }                                                                                     \
  } while (0)

/* ---------------------------------------------------------------- starting */

static gt_redis *start_node(const gt_sentinel *s, int master_port) {
  char conf[256];
  node_conf(s, master_port, conf, sizeof(conf));
  gt_redis_opts o = {.extra_conf = conf, .certs = s->certs};
  return gt_redis_start_opts(&o);
}

static gt_redis *start_sentinel(const gt_sentinel *s, int master_port) {
  char conf[1024];
  snprintf(conf, sizeof(conf),
           "sentinel resolve-hostnames no\n"
           "sentinel monitor %s 127.0.0.1 %d %d\n"
           "sentinel down-after-milliseconds %s 1000\n"
           "sentinel failover-timeout %s 4000\n"
           "%s",
           s->name, master_port, s->quorum, s->name, s->name,
           s->certs != NULL ? "tls-replication yes\n" : "");
  gt_redis_opts o = {.extra_conf = conf, .sentinel = true, .certs = s->certs};
  return gt_redis_start_opts(&o);
}

static gt_sentinel *start_set(const gt_certs *certs, int nreplicas, int nsentinels,
                              const char *master_name) {
  if (nreplicas < 0 || nsentinels < 1) {
    fprintf(stderr, "gt_sentinel: need nreplicas >= 0 and nsentinels >= 1, not %d and %d\n",
            nreplicas, nsentinels);
    return NULL;
  }
  if (master_name == NULL)
    master_name = "mymaster";
  if (*master_name == '\0' || strlen(master_name) >= GT_SENTINEL_NAME_MAX ||
      strpbrk(master_name, " \t\r\n\"'") != NULL) {
    fprintf(stderr, "gt_sentinel: bad master name \"%s\"\n", master_name);
    return NULL;
  }
  gt_sentinel *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  snprintf(s->name, sizeof(s->name), "%s", master_name);
  s->certs = certs;
  s->quorum = nsentinels / 2 + 1;
  s->nodes = calloc((size_t)nreplicas + 1, sizeof(*s->nodes));
  s->sentinels = calloc((size_t)nsentinels, sizeof(*s->sentinels));
  if (s->nodes == NULL || s->sentinels == NULL) {
    fprintf(stderr, "gt_sentinel: out of memory\n");
    gt_sentinel_stop(s);
    return NULL;
  }
  /* Counted as they start, so that gt_sentinel_stop() stops what did. */
  s->nodes[0] = start_node(s, 0);
  if (s->nodes[0] == NULL)
    goto fail;
  s->nnodes = 1;
  int m = port_of(s->nodes[0]);
  for (int i = 1; i <= nreplicas; i++) {
    s->nodes[i] = start_node(s, m);
    if (s->nodes[i] == NULL)
      goto fail;
    s->nnodes++;
  }
  for (int i = 0; i < nsentinels; i++) {
    s->sentinels[i] = start_sentinel(s, m);
    if (s->sentinels[i] == NULL)
      goto fail;
    s->nsentinels++;
  }
  int n = snprintf(s->url, sizeof(s->url), "%s://", certs != NULL ? "rediss-sentinel"
                                                                  : "redis-sentinel");
  for (int i = 0; i < s->nsentinels && n > 0 && (size_t)n < sizeof(s->url); i++)
    n += snprintf(s->url + n, sizeof(s->url) - (size_t)n, "%s127.0.0.1:%d", i > 0 ? "," : "",
                  port_of(s->sentinels[i]));
  if (n > 0 && (size_t)n < sizeof(s->url))
    snprintf(s->url + n, sizeof(s->url) - (size_t)n, "/%s/0", s->name);
  if (gt_sentinel_wait_ready(s) != 0)
    goto fail;
  return s;

fail:
  fprintf(stderr, "gt_sentinel: could not start a set of 1 master, %d replicas, %d sentinels\n",
          nreplicas, nsentinels);
  gt_sentinel_stop(s);
  return NULL;
}

/* ---------------------------------------------------------------- public */

gt_sentinel *gt_sentinel_start(int nreplicas, int nsentinels, const char *master_name) {
  return start_set(NULL, nreplicas, nsentinels, master_name);
}

gt_sentinel *gt_sentinel_start_tls(const gt_certs *certs, int nreplicas, int nsentinels,
                                   const char *master_name) {
  if (certs == NULL) {
    fprintf(stderr, "gt_sentinel: start_tls needs certificates (gt_certs_make())\n");
    return NULL;
  }
  return start_set(certs, nreplicas, nsentinels, master_name);
}

void gt_sentinel_stop(gt_sentinel *s) {
  if (s == NULL)
    return;
  /* Sentinels first, so that none reacts to the nodes going away. */
  for (int i = 0; i < s->nsentinels; i++)
    gt_redis_stop(s->sentinels[i]);
  for (int i = 0; i < s->nnodes; i++)
    gt_redis_stop(s->nodes[i]);
  free(s->sentinels);
  free(s->nodes);
  free(s);
}

const char *gt_sentinel_url(const gt_sentinel *s) { return s->url; }
const char *gt_sentinel_master_name(const gt_sentinel *s) { return s->name; }
int gt_sentinel_count(const gt_sentinel *s) { return s->nsentinels; }
int gt_sentinel_port(const gt_sentinel *s, int i) { return port_of(s->sentinels[i]); }
gt_redis *gt_sentinel_instance(const gt_sentinel *s, int i) { return s->sentinels[i]; }
int gt_sentinel_node_count(const gt_sentinel *s) { return s->nnodes; }
gt_redis *gt_sentinel_node(const gt_sentinel *s, int i) { return s->nodes[i]; }

int gt_sentinel_master_port(const gt_sentinel *s) {
  for (int i = 0; i < s->nsentinels; i++) {
    if (!running(s->sentinels[i]))
      continue;
    int port = sentinel_says(s->sentinels[i], s->name);
    if (port > 0)
      return port;
  }
  return -1;
}

int gt_sentinel_master_node(const gt_sentinel *s) {
  int port = gt_sentinel_master_port(s);
  return port > 0 ? node_by_port(s, port) : -1;
}

int gt_sentinel_wait_new_master(gt_sentinel *s, int old_port) {
  why w = {""};
  GT_WAIT("wait for a new master", new_master_ok(s, old_port, &w));
  follow_topology(s, agreed_master(s, &w));
  return 0;
}

int gt_sentinel_wait_ready(gt_sentinel *s) {
  why w = {""};
  GT_WAIT("wait until the set is ready", ready_ok(s, &w));
  follow_topology(s, agreed_master(s, &w));
  return 0;
}

int gt_sentinel_failover(gt_sentinel *s) {
  int old = gt_sentinel_master_port(s);
  for (int i = 0; i < s->nsentinels; i++) {
    if (!running(s->sentinels[i]))
      continue;
    redisReply *rep = ask(s->sentinels[i], "SENTINEL FAILOVER %s", s->name);
    if (rep == NULL)
      continue; /* try the next sentinel */
    bool ok = rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0;
    if (!ok)
      fprintf(stderr, "gt_sentinel: SENTINEL FAILOVER %s at port %d: %s\n", s->name,
              port_of(s->sentinels[i]),
              rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    freeReplyObject(rep);
    return ok ? gt_sentinel_wait_new_master(s, old) : -1;
  }
  fprintf(stderr, "gt_sentinel: SENTINEL FAILOVER: no sentinel answers\n");
  return -1;
}

int gt_sentinel_kill_master(gt_sentinel *s) {
  int idx = gt_sentinel_master_node(s);
  if (idx < 0 || gt_redis_kill9(s->nodes[idx]) != 0) {
    fprintf(stderr, "gt_sentinel: kill_master: the master is unknown or not running\n");
    return -1;
  }
  return idx;
}

int gt_sentinel_rejoin(gt_sentinel *s, int node) {
  if (node < 0 || node >= s->nnodes || running(s->nodes[node])) {
    fprintf(stderr, "gt_sentinel: rejoin: node %d is not a stopped node of the set\n", node);
    return -1;
  }
  why w = {""};
  int m = -1;
  GT_WAIT("rejoin: find the master", (m = agreed_master(s, &w)) > 0);
  char conf[256];
  node_conf(s, m, conf, sizeof(conf));
  if (gt_redis_set_extra_conf(s->nodes[node], conf) != 0 ||
      gt_redis_start_again(s->nodes[node]) != 0)
    return -1;
  return gt_sentinel_wait_ready(s);
}

int gt_sentinel_demote_old_masters(gt_sentinel *s) {
  why w = {""};
  int m = -1;
  GT_WAIT("demote: find the master", (m = agreed_master(s, &w)) > 0);
  for (int i = 0; i < s->nnodes; i++) {
    node_state st;
    if (port_of(s->nodes[i]) == m || !running(s->nodes[i]) || !node_info(s->nodes[i], &st) ||
        strcmp(st.role, "master") != 0)
      continue;
    redisContext *c = gt_redis_connect_timeout(s->nodes[i], gt_scaled_ms(GT_SENTINEL_CMD_MS));
    if (c == NULL) {
      fprintf(stderr, "gt_sentinel: demote: node %d does not answer\n", i);
      return -1;
    }
    redisReply *a = redisCommand(c, "REPLICAOF 127.0.0.1 %d", m);
    redisReply *b = redisCommand(c, "CLIENT KILL TYPE normal");
    bool ok = a != NULL && a->type == REDIS_REPLY_STATUS && b != NULL &&
              b->type == REDIS_REPLY_INTEGER;
    if (!ok)
      fprintf(stderr, "gt_sentinel: demote: node %d: REPLICAOF / CLIENT KILL failed: %s\n", i,
              a != NULL && a->type == REDIS_REPLY_ERROR   ? a->str
              : b != NULL && b->type == REDIS_REPLY_ERROR ? b->str
                                                          : c->errstr);
    freeReplyObject(a);
    freeReplyObject(b);
    redisFree(c);
    if (!ok)
      return -1;
  }
  return gt_sentinel_wait_ready(s);
}
