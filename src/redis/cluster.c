/* redis/cluster.c -- Redis Cluster (issue 17): key slots, the slot map, and
 * the choice of node for each command.
 *
 * A cluster handle is a gtask__redis whose `cluster` is set: it holds no
 * connections itself but one pool per node it has heard of (a gtask__redis
 * each, whose `parent` leads back here), and the map from the 16384 slots to
 * the pool of their master.  Every key of a queue carries the queue as its
 * hash tag (P:{q}:...), so one queue lives in one slot and every script
 * touches one slot only (docs/PROTOCOL.md, "Redis Cluster"): a command is
 * routed by its queue (gtask__redis_for_queue) and runs on that slot's master.
 *
 * The map is read from any node that answers (CLUSTER SHARDS, or CLUSTER
 * SLOTS before Redis 7), at creation and again when it turns out stale: a
 * MOVED reply (the slot moved: resharding or a failover), a node that cannot
 * be reached (it may have failed over).  pool.c follows the replies a node
 * gives instead of running a command (gtask__cluster_redirect): MOVED to the
 * named node, ASK to the importing node with ASKING, and TRYAGAIN (a slot in
 * migration whose keys are split) and CLUSTERDOWN (a slot without a master,
 * during a failover) again on the same node after a pause, a bounded number
 * of times.  None of them ran the command, so none of these retries can apply
 * it twice.
 *
 * The map is also read again when it is older than gtask__cluster_max_age_ms
 * (15 s), so that an idle worker or client whose slots moved (a reshard, a
 * failover it has not met yet) sends its next command straight to the right
 * node.  One caller reads it (the first to find it old or stale); the others
 * go on with the map they have, and nobody waits on a mutex for it.  A MOVED
 * read on any path -- also a pipeline's, or a plain command's -- corrects the
 * slot it names at once (gtask__cluster_moved, from gtask__redis_put).
 *
 * A node that is no longer a master in a map just read (it was removed, or
 * is a replica now) and is not a seed is retired: its idle connections are
 * closed, and its pool is freed once none of its connections lives (each
 * counts itself in the pool's `live`: a borrowed connection, a worker's lease
 * connection) and it has been retired for a max age -- time for a caller
 * that routed to it before the map changed to take its connection.  A
 * retired node named again (a new map, a redirection) comes back.
 * Invariant: the cluster mutex is never held while calling into a node. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define NSLOTS 16384
#define REFRESH_EVERY_MS 100 /* at most one map refresh a stale map asks for, per this */
#define MAX_NODES 1024

atomic_llong gtask__cluster_max_age_ms = 15000;
atomic_ulong gtask__cluster_nodes_freed;

struct gtask__cluster {
  pthread_mutex_t mu;
  gtask__redis **nodes; /* every node heard of (seeds, masters, redirection targets) */
  size_t nnodes;
  gtask__redis **retired; /* nodes out of the map, to free once unused */
  int64_t *retired_ms;    /* since when each is (mono) */
  size_t nretired;
  gtask__redis *slot[NSLOTS]; /* the master of each slot, or NULL: unknown */
  bool stale;                 /* the map needs reading again */
  bool refreshing;            /* a thread reads it now */
  int64_t refreshed_ms;       /* when it was last read (mono) */
};

/* ---------------------------------------------------------------- slots */

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0, no reflection), the
 * checksum Redis Cluster hashes keys with (cluster spec, "Keys distribution
 * model"); CRC16("123456789") is 0x31C3. */
uint16_t gtask__crc16(const char *buf, size_t len) {
  uint16_t crc = 0;
  for (size_t i = 0; i < len; i++) {
    crc ^= (uint16_t)((uint16_t)(unsigned char)buf[i] << 8);
    for (int b = 0; b < 8; b++) crc = crc & 0x8000 ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
  }
  return crc;
}

/* The slot of a key: the CRC16 of its hash tag -- what is between the first
 * '{' and the first '}' after it, if that is not empty -- or else of the
 * whole key, modulo 16384. */
unsigned gtask__key_slot(const char *key, size_t len) {
  const char *open = memchr(key, '{', len);
  if (open) {
    size_t rest = len - (size_t)(open - key) - 1;
    const char *close = memchr(open + 1, '}', rest);
    if (close && close > open + 1) return gtask__crc16(open + 1, (size_t)(close - open - 1)) & (NSLOTS - 1);
  }
  return gtask__crc16(key, len) & (NSLOTS - 1);
}

/* ---------------------------------------------------------------- nodes */

/* The pool of host:port, made if new (under cl->mu).  NULL if out of memory. */
static gtask__redis *node_at(gtask__redis *r, const char *host, int port) {
  gtask__cluster *cl = r->cluster;
  for (size_t k = 0; k < cl->nnodes; k++)
    if (cl->nodes[k]->conf->port == port && strcasecmp(cl->nodes[k]->conf->host, host) == 0)
      return cl->nodes[k];
  if (cl->nnodes == MAX_NODES) return NULL;
  gtask__redis **v = gtask__realloc(cl->nodes, (cl->nnodes + 1) * sizeof(*v));
  if (!v) return NULL;
  cl->nodes = v;
  gtask__redis *n = NULL;
  for (size_t k = 0; k < cl->nretired && !n; k++) /* back from retirement */
    if (cl->retired[k]->conf->port == port && strcasecmp(cl->retired[k]->conf->host, host) == 0) {
      n = cl->retired[k];
      cl->retired[k] = cl->retired[cl->nretired - 1];
      cl->retired_ms[k] = cl->retired_ms[--cl->nretired];
    }
  if (!n && gtask__redis_node_new(r, host, port, &n) != 0) return NULL;
  cl->nodes[cl->nnodes++] = n;
  return n;
}

/* True if n is one of the conf's seed nodes (never retired: they are how the
 * map is found again if every master moves). */
static bool is_seed(const gtask__redis *r, const gtask__redis *n) {
  for (int k = 0; k < r->conf->nseeds; k++)
    if (n->conf->port == r->conf->seed_port[k] &&
        strcasecmp(n->conf->host, r->conf->seed_host[k]) == 0)
      return true;
  return false;
}

/* Moves the nodes that are in no slot of the map (and not seeds) from
 * cl->nodes to cl->retired (under cl->mu).  Out of memory: they stay. */
static void retire_unmapped(gtask__redis *r, int64_t now) {
  gtask__cluster *cl = r->cluster;
  for (size_t k = 0; k < cl->nnodes;) {
    gtask__redis *n = cl->nodes[k];
    bool mapped = false;
    for (size_t s = 0; s < NSLOTS && !mapped; s++) mapped = cl->slot[s] == n;
    if (mapped || is_seed(r, n)) {
      k++;
      continue;
    }
    gtask__redis **v = gtask__realloc(cl->retired, (cl->nretired + 1) * sizeof(*v));
    if (v) cl->retired = v;
    int64_t *t = v ? gtask__realloc(cl->retired_ms, (cl->nretired + 1) * sizeof(*t)) : NULL;
    if (!t) return;
    cl->retired_ms = t;
    cl->retired[cl->nretired] = n;
    cl->retired_ms[cl->nretired++] = now;
    cl->nodes[k] = cl->nodes[--cl->nnodes];
  }
}

/* Closes the idle connections of the retired nodes, and frees those retired
 * for a max age with no connection alive.  Called without cl->mu. */
static void reap_retired(gtask__redis *r) {
  gtask__cluster *cl = r->cluster;
  int64_t grace = atomic_load(&gtask__cluster_max_age_ms);
  for (size_t k = 0;; k++) {
    pthread_mutex_lock(&cl->mu);
    gtask__redis *n = k < cl->nretired ? cl->retired[k] : NULL;
    bool old = n && gtask__mono_ms() - cl->retired_ms[k] >= grace;
    pthread_mutex_unlock(&cl->mu);
    if (!n) return;
    gtask__redis_close_idle(n);
    if (!old || atomic_load_explicit(&n->live, memory_order_acquire) != 0) continue;
    pthread_mutex_lock(&cl->mu);
    bool still = k < cl->nretired && cl->retired[k] == n; /* not revived meanwhile */
    if (still) {
      cl->retired[k] = cl->retired[cl->nretired - 1];
      cl->retired_ms[k] = cl->retired_ms[--cl->nretired];
    }
    pthread_mutex_unlock(&cl->mu);
    if (!still) continue;
    gtask__log(GTASK_LOG_INFO, "redis %s: no longer in the slot map: its pool is freed",
               n->conf->describe);
    gtask__redis_free(n);
    atomic_fetch_add(&gtask__cluster_nodes_freed, 1);
    k--; /* the last one took its place */
  }
}

/* One slot range of a map being read. */
typedef struct range {
  long start, end;
  char host[256];
  int port;
} range;

typedef struct ranges {
  range *v;
  size_t n, cap;
} ranges;

/* An empty host (or "?") in a map means the node that sent it (a node that
 * has never talked to another does not know its own address): self. */
static bool ranges_add(ranges *rs, long start, long end, const char *host, size_t hlen, int port,
                       const char *self) {
  if (hlen == 0 || (hlen == 1 && host[0] == '?')) {
    host = self;
    hlen = strlen(self);
  }
  if (start < 0 || end >= NSLOTS || start > end || hlen == 0 || hlen >= sizeof(rs->v->host) ||
      port <= 0 || port > 65535)
    return true; /* ignore what cannot be a slot range */
  if (rs->n == rs->cap) {
    size_t cap = rs->cap ? 2 * rs->cap : 16;
    range *v = gtask__realloc(rs->v, cap * sizeof(*v));
    if (!v) return false;
    rs->v = v;
    rs->cap = cap;
  }
  range *g = &rs->v[rs->n++];
  g->start = start;
  g->end = end;
  memcpy(g->host, host, hlen);
  g->host[hlen] = '\0';
  g->port = port;
  return true;
}

/* The value of field `name` in a flat [name, value, ...] array, or NULL. */
static const redisReply *field(const redisReply *m, const char *name) {
  if (m->type != REDIS_REPLY_ARRAY) return NULL;
  for (size_t k = 0; k + 1 < m->elements; k += 2)
    if (m->element[k]->type == REDIS_REPLY_STRING && strcmp(m->element[k]->str, name) == 0)
      return m->element[k + 1];
  return NULL;
}

/* CLUSTER SHARDS (Redis 7): [[slots, [s, e, ...], nodes, [{id, port,
 * tls-port, ip, endpoint, role, health...}, ...]], ...].  The master of each
 * shard, its TLS port when tls. */
static bool parse_shards(const redisReply *rep, bool tls, const char *self, ranges *rs) {
  for (size_t s = 0; s < rep->elements; s++) {
    const redisReply *slots = field(rep->element[s], "slots");
    const redisReply *nodes = field(rep->element[s], "nodes");
    if (!slots || !nodes || slots->type != REDIS_REPLY_ARRAY || nodes->type != REDIS_REPLY_ARRAY)
      continue;
    const redisReply *master = NULL;
    for (size_t k = 0; k < nodes->elements && !master; k++) {
      const redisReply *role = field(nodes->element[k], "role");
      if (role && role->type == REDIS_REPLY_STRING && strcmp(role->str, "master") == 0)
        master = nodes->element[k];
    }
    if (!master) continue;
    const redisReply *ep = field(master, "endpoint"), *ip = field(master, "ip");
    const redisReply *port = field(master, tls ? "tls-port" : "port");
    if (ep && (ep->type != REDIS_REPLY_STRING || ep->len == 0)) ep = NULL;
    const redisReply *host = ep ? ep : ip;
    if (!host || host->type != REDIS_REPLY_STRING || !port || port->type != REDIS_REPLY_INTEGER)
      continue;
    for (size_t k = 0; k + 1 < slots->elements; k += 2) {
      if (slots->element[k]->type != REDIS_REPLY_INTEGER ||
          slots->element[k + 1]->type != REDIS_REPLY_INTEGER)
        continue;
      if (!ranges_add(rs, (long)slots->element[k]->integer, (long)slots->element[k + 1]->integer,
                      host->str, host->len, (int)port->integer, self))
        return false;
    }
  }
  return true;
}

/* CLUSTER SLOTS: [[start, end, [host, port, id, ...], replicas...], ...]. */
static bool parse_slots(const redisReply *rep, const char *self, ranges *rs) {
  for (size_t s = 0; s < rep->elements; s++) {
    const redisReply *e = rep->element[s];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
        e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY ||
        e->element[2]->elements < 2 || e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
        e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
      continue;
    const redisReply *m = e->element[2];
    if (!ranges_add(rs, (long)e->element[0]->integer, (long)e->element[1]->integer, m->element[0]->str,
                    m->element[0]->len, (int)m->element[1]->integer, self))
      return false;
  }
  return true;
}

/* Asks node n for the map.  0 and the ranges, or an error code (detail set). */
static int ask_map(gtask__redis *n, ranges *rs) {
  gtask__conn *c;
  int rc = gtask__redis_get(n, &c);
  if (rc) return rc;
  redisReply *rep = gtask__conn_command(c, "CLUSTER SHARDS");
  bool shards = true;
  if (rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "ERR unknown", 11) == 0) {
    freeReplyObject(rep); /* before Redis 7.0 */
    rep = gtask__conn_command(c, "CLUSTER SLOTS");
    shards = false;
  }
  if (!rep) {
    gtask__set_error("redis %s: CLUSTER SHARDS: %s", n->conf->describe, c->errstr);
    rc = GTASK_ECONN;
  } else if (rep->type == REDIS_REPLY_ERROR) {
    gtask__set_error("redis %s: CLUSTER %s: %s", n->conf->describe, shards ? "SHARDS" : "SLOTS",
                     rep->str);
    rc = strstr(rep->str, "cluster support disabled") ? GTASK_EINVAL : gtask__redis_reply_rc(rep->str);
  } else if (rep->type != REDIS_REPLY_ARRAY) {
    gtask__set_error("redis %s: CLUSTER SHARDS: unexpected reply", n->conf->describe);
    rc = GTASK_EPROTO;
  } else if (!(shards ? parse_shards(rep, n->conf->tls, n->conf->host, rs)
                      : parse_slots(rep, n->conf->host, rs))) {
    rc = GTASK_ENOMEM;
  } else if (rs->n == 0) {
    gtask__set_error("redis %s: the cluster has no slots assigned yet", n->conf->describe);
    rc = GTASK_ECONN;
  }
  if (rep) freeReplyObject(rep);
  gtask__redis_put(n, c);
  return rc;
}

/* Reads the map from the first node that gives one: the masters first (the
 * likeliest to be up to date), then every other node heard of. */
static int refresh(gtask__redis *r) {
  gtask__cluster *cl = r->cluster;
  pthread_mutex_lock(&cl->mu);
  size_t nn = cl->nnodes;
  gtask__redis **order = gtask__malloc((nn ? nn : 1) * sizeof(*order));
  size_t no = 0;
  if (order) {
    for (size_t k = 0; k < nn; k++) { /* masters, each once */
      gtask__redis *n = cl->nodes[k];
      bool master = false;
      for (size_t s = 0; s < NSLOTS && !master; s += 1) master = cl->slot[s] == n;
      if (master) order[no++] = n;
    }
    for (size_t k = 0; k < nn; k++) {
      bool seen = false;
      for (size_t j = 0; j < no && !seen; j++) seen = order[j] == cl->nodes[k];
      if (!seen) order[no++] = cl->nodes[k];
    }
  }
  pthread_mutex_unlock(&cl->mu);
  if (!order) return GTASK_ENOMEM;
  int rc = GTASK_ECONN;
  ranges rs = {0};
  for (size_t k = 0; k < no; k++) {
    rs.n = 0;
    int rk = ask_map(order[k], &rs);
    if (rk == 0) {
      rc = 0;
      break;
    }
    if (rk == GTASK_ENOMEM || rk == GTASK_EINVAL || rk == GTASK_ENOPERM) {
      rc = rk;
      break;
    }
  }
  gtask__free(order);
  pthread_mutex_lock(&cl->mu);
  if (rc == 0) {
    gtask__redis *slot[NSLOTS] = {0};
    for (size_t k = 0; k < rs.n && rc == 0; k++) {
      gtask__redis *n = node_at(r, rs.v[k].host, rs.v[k].port);
      if (!n) rc = GTASK_ENOMEM;
      for (long s = rs.v[k].start; n && s <= rs.v[k].end; s++) slot[s] = n;
    }
    if (rc == 0) {
      memcpy(cl->slot, slot, sizeof(slot));
      cl->stale = false;
      retire_unmapped(r, gtask__mono_ms());
    }
  }
  cl->refreshed_ms = gtask__mono_ms();
  pthread_mutex_unlock(&cl->mu);
  gtask__free(rs.v);
  if (rc == 0) reap_retired(r);
  return rc;
}

/* ---------------------------------------------------------------- routing */

/* Reads the map as the one caller that does (cl->refreshing set by the
 * caller; cleared here).  A refresh that fails keeps the old map: it is
 * logged, and the caller's error detail is kept. */
static void refresh_once(gtask__redis *r) {
  gtask__cluster *cl = r->cluster;
  char why[512];
  gtask__fmt(why, sizeof(why), "%s", gtask_last_error());
  if (refresh(r) != 0)
    gtask__log(GTASK_LOG_WARN, "redis %s: cannot read the slot map: %s", r->conf->describe,
               gtask_last_error());
  gtask__set_error("%s", why);
  pthread_mutex_lock(&cl->mu);
  cl->refreshing = false;
  pthread_mutex_unlock(&cl->mu);
}

void gtask__cluster_refresh_now(gtask__redis *r) {
  gtask__cluster *cl = r ? r->cluster : NULL;
  if (!cl) return;
  /* Another caller's read, under way: wait for it (it started after the
   * change we met, or at worst just before: then MOVED corrects the slot). */
  int64_t give_up = gtask__mono_ms() + r->conf->timeout_ms;
  for (;;) {
    pthread_mutex_lock(&cl->mu);
    bool busy = cl->refreshing;
    if (!busy) cl->refreshing = true;
    pthread_mutex_unlock(&cl->mu);
    if (!busy) break;
    if (gtask__mono_ms() >= give_up) return;
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL);
  }
  refresh_once(r);
}

void gtask__cluster_stale(gtask__redis *r) {
  if (!r || !r->cluster) return;
  pthread_mutex_lock(&r->cluster->mu);
  r->cluster->stale = true;
  pthread_mutex_unlock(&r->cluster->mu);
}

gtask__redis *gtask__redis_route(gtask__redis *r, const char *key, size_t len) {
  gtask__cluster *cl = r->cluster;
  if (!cl) return r;
  unsigned s = gtask__key_slot(key, len);
  pthread_mutex_lock(&cl->mu);
  int64_t age = gtask__mono_ms() - cl->refreshed_ms;
  bool refresh_now = !cl->refreshing && (((cl->stale || !cl->slot[s]) && age >= REFRESH_EVERY_MS) ||
                                         age >= atomic_load(&gtask__cluster_max_age_ms));
  if (refresh_now) cl->refreshing = true;
  pthread_mutex_unlock(&cl->mu);
  if (refresh_now) refresh_once(r);
  pthread_mutex_lock(&cl->mu);
  gtask__redis *n = cl->slot[s];
  if (!n) n = cl->nodes[0]; /* a slot without a master: its CLUSTERDOWN will say so */
  pthread_mutex_unlock(&cl->mu);
  return n;
}

gtask__redis *gtask__redis_for_queue(gtask__redis *r, const char *queue) {
  if (!r->cluster) return r;
  char key[GTASK__KEY_MAX];
  size_t len = gtask__redis_key(r, key, sizeof(key), queue, "stream", NULL);
  return gtask__redis_route(r, key, len);
}

int gtask__redis_use(gtask__redis *r, const char *queue, gtask__conn **c) {
  gtask__redis *n = gtask__redis_for_queue(r, queue);
  if (*c && (*c)->owner == n) return 0;
  if (*c) gtask__redis_put(r, *c);
  *c = NULL;
  return gtask__redis_get(n, c);
}

size_t gtask__redis_masters(gtask__redis *r, gtask__redis **out, size_t max) {
  if (!r->cluster) {
    if (max) out[0] = r;
    return 1;
  }
  gtask__cluster *cl = r->cluster;
  gtask__redis_route(r, "", 0); /* refreshes a stale map */
  pthread_mutex_lock(&cl->mu);
  size_t n = 0;
  for (size_t k = 0; k < cl->nnodes; k++) {
    bool master = false;
    for (size_t s = 0; s < NSLOTS && !master; s++) master = cl->slot[s] == cl->nodes[k];
    if (master && n < max) out[n++] = cl->nodes[k];
  }
  pthread_mutex_unlock(&cl->mu);
  return n;
}

/* Parses "MOVED 3999 127.0.0.1:6381" / "ASK ..." after the word: the slot and
 * the address.  False if malformed. */
static bool parse_redirect(const char *s, long *slot, char *host, size_t hsize, int *port) {
  char *end;
  *slot = strtol(s, &end, 10);
  if (end == s || *end != ' ' || *slot < 0 || *slot >= NSLOTS) return false;
  const char *addr = end + 1;
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr || (size_t)(colon - addr) >= hsize) return false;
  long p = strtol(colon + 1, &end, 10);
  if (*end != '\0' || p <= 0 || p > 65535) return false;
  size_t hl = (size_t)(colon - addr);
  if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') addr++, hl -= 2; /* [v6]:port */
  memcpy(host, addr, hl);
  host[hl] = '\0';
  *port = (int)p;
  return true;
}

/* The pool of host:port (made if new); with moved, also the master of slot
 * now, the rest of the map to be read again. */
static gtask__redis *moved_to(gtask__redis *r, long slot, const char *host, int port, bool moved) {
  pthread_mutex_lock(&r->cluster->mu);
  gtask__redis *t = node_at(r, host, port);
  if (t && moved) {
    r->cluster->slot[slot] = t;
    r->cluster->stale = true; /* more slots may have moved with it */
  }
  pthread_mutex_unlock(&r->cluster->mu);
  return t;
}

void gtask__cluster_moved(gtask__redis *n, const char *err) {
  long slot;
  char host[256];
  int port;
  if (!n || !n->parent || strncmp(err, "MOVED ", 6) != 0 ||
      !parse_redirect(err + 6, &slot, host, sizeof(host), &port)) {
    gtask__cluster_stale(n ? n->parent : NULL);
    return;
  }
  moved_to(n->parent, slot, host, port, true);
}

bool gtask__redis_lease_moved(gtask__redis *r, int attempt) {
  if (!r->cluster || attempt >= 8) return false;
  const char *e = gtask_last_error();
  bool moved = strstr(e, ": MOVED ") != NULL, asked = strstr(e, ": ASK ") != NULL;
  bool gone = strstr(e, "UNBLOCKED") && strstr(e, "no longer exists");
  if (!moved && !asked && !gone) return false;
  if (asked) {
    /* The stream is on the importing node, the slot still the old master's
     * until the move's last step (SETSLOT NODE): usually moments. */
    if (attempt > 5) return false;
    int64_t ms = 5LL << attempt;
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
    gtask__cluster_stale(r);
  }
  if (gone) gtask__cluster_refresh_now(r);
  atomic_fetch_add_explicit(&gtask__cluster_lease_moves, 1, memory_order_relaxed);
  return true;
}

atomic_ulong gtask__cluster_followed[4];
atomic_ulong gtask__cluster_lease_moves;

int gtask__cluster_redirect(gtask__redis *n, const char *err, int hop, gtask__redis **to,
                            bool *ask) {
  gtask__redis *r = n->parent;
  *ask = false;
  *to = n;
  if (!r || hop >= 16) return -1;
  bool moved = strncmp(err, "MOVED ", 6) == 0, asked = strncmp(err, "ASK ", 4) == 0;
  if (moved || asked) {
    long slot;
    char host[256];
    int port;
    if (!parse_redirect(err + (moved ? 6 : 4), &slot, host, sizeof(host), &port)) return -1;
    gtask__redis *t = moved_to(r, slot, host, port, moved);
    if (!t) return -1;
    *to = t;
    *ask = asked;
    atomic_fetch_add_explicit(&gtask__cluster_followed[moved ? 0 : 1], 1, memory_order_relaxed);
    return 0;
  }
  /* TRYAGAIN: a multi-key command on a slot in migration whose keys are split
   * between the two nodes, for as long as the migration of those keys takes.
   * CLUSTERDOWN: a slot without a master, until a replica takes over (the
   * node timeout and an election: seconds).  Retried on the same node after
   * 10, 20, 40 ... 320 ms, about 5 s in all, then given up as GTASK_ECONN. */
  if (strncmp(err, "TRYAGAIN", 8) == 0 || strncmp(err, "CLUSTERDOWN", 11) == 0) {
    if (hop >= 16) return -1;
    int64_t ms = 10LL << (hop < 5 ? hop : 5);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    if (err[0] == 'C') gtask__cluster_stale(r); /* the slot may have a new master */
    atomic_fetch_add_explicit(&gtask__cluster_followed[err[0] == 'T' ? 2 : 3], 1,
                              memory_order_relaxed);
    return 0;
  }
  return -1;
}

/* ---------------------------------------------------------------- life */

int gtask__cluster_new(gtask__redis *r) {
  gtask__cluster *cl = gtask__calloc(1, sizeof(*cl));
  if (!cl) return GTASK_ENOMEM;
  pthread_mutex_init(&cl->mu, NULL);
  r->cluster = cl;
  int rc = 0;
  pthread_mutex_lock(&cl->mu);
  for (int k = 0; k < r->conf->nseeds && rc == 0; k++)
    if (!node_at(r, r->conf->seed_host[k], r->conf->seed_port[k])) rc = GTASK_ENOMEM;
  pthread_mutex_unlock(&cl->mu);
  if (rc == 0) rc = refresh(r);
  if (rc == GTASK_ECONN) {
    char why[512];
    gtask__fmt(why, sizeof(why), "%s", gtask_last_error());
    gtask__set_error("redis %s: no node gave the slot map: %s", r->conf->describe, why);
  }
  /* Load the scripts on every master now: a node unreachable now is an error
   * at creation, as a single server is; one that comes later loads them on
   * its first NOSCRIPT. */
  gtask__redis *m[MAX_NODES];
  size_t nm = rc ? 0 : gtask__redis_masters(r, m, MAX_NODES);
  for (size_t k = 0; k < nm && rc == 0; k++) rc = gtask__redis_load_scripts(m[k]);
  return rc;
}

void gtask__cluster_free(gtask__cluster *cl) {
  if (!cl) return;
  for (size_t k = 0; k < cl->nnodes; k++) gtask__redis_free(cl->nodes[k]);
  for (size_t k = 0; k < cl->nretired; k++) gtask__redis_free(cl->retired[k]);
  gtask__free(cl->nodes);
  gtask__free(cl->retired);
  gtask__free(cl->retired_ms);
  pthread_mutex_destroy(&cl->mu);
  gtask__free(cl);
}
