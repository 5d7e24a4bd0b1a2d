/* redis/pool.c -- connections to one Redis server and database, shared by the
 * threads of a broker or a backend, and the helpers that speak to it: argument
 * vectors, commands with error mapping, and EVALSHA with reload on NOSCRIPT.
 *
 * A connection is opened on demand up to the pool size, authenticated and
 * switched to the configured db, lent to one thread at a time, and closed when
 * it comes back broken (an I/O error or a protocol error leaves hiredis' context
 * unusable).  The next borrower opens a fresh one: that is the reconnection. */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <openssl/err.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

/* ---------------------------------------------------------------- argv */

void gtask__argv_init(gtask__argv *a) { memset(a, 0, sizeof(*a)); }

void gtask__argv_reset(gtask__argv *a) {
  a->n = 0;
  a->nnum = 0;
  a->oom = false;
}

void gtask__argv_free(gtask__argv *a) {
  gtask__free(a->v);
  gtask__free(a->len);
  gtask__free(a->num);
  memset(a, 0, sizeof(*a));
}

void gtask__argv_add(gtask__argv *a, const char *s, size_t len) {
  if (a->oom) return;
  if (a->n == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 32;
    const char **v = gtask__realloc(a->v, cap * sizeof(*v));
    if (!v) goto oom;
    a->v = v;
    size_t *l = gtask__realloc(a->len, cap * sizeof(*l));
    if (!l) goto oom;
    a->len = l;
    a->cap = cap;
  }
  a->v[a->n] = s;
  a->len[a->n] = len;
  a->n++;
  return;
oom:
  a->oom = true;
}

void gtask__argv_adds(gtask__argv *a, const char *s) { gtask__argv_add(a, s, strlen(s)); }

/* Writes v in decimal at out (at most 20 bytes, no terminator); returns the
 * length.  (snprintf costs ~1000 instructions a number: a command of a batch
 * of finished tasks has thousands.) */
static size_t dec_u64(char *out, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t k = 0; k < n; k++) out[k] = tmp[n - 1 - k];
  return n;
}

static size_t dec_i64(char *out, int64_t i) {
  if (i >= 0) return dec_u64(out, (uint64_t)i);
  out[0] = '-';
  return 1 + dec_u64(out + 1, 0 - (uint64_t)i);
}

/* Integers live in a->num, which may move when it grows: the pointers into it
 * are stored as offsets (tagged in len with the top bit) and fixed up by
 * argv_fix() just before the vector is used. */
#define NUM_TAG ((size_t)1 << (sizeof(size_t) * 8 - 1))

void gtask__argv_addi(gtask__argv *a, int64_t i) {
  if (a->oom) return;
  if (a->nnum == a->capnum) {
    size_t cap = a->capnum ? a->capnum * 2 : 16;
    char *num = gtask__realloc(a->num, cap * 21);
    if (!num) {
      a->oom = true;
      return;
    }
    a->num = num;
    a->capnum = cap;
  }
  char *slot = a->num + a->nnum * 21;
  size_t len = dec_i64(slot, i);
  gtask__argv_add(a, (const char *)(uintptr_t)a->nnum, NUM_TAG | len);
  a->nnum++;
}

static void argv_fix(gtask__argv *a) {
  for (size_t k = 0; k < a->n; k++) {
    if (a->len[k] & NUM_TAG) {
      a->v[k] = a->num + (uintptr_t)a->v[k] * 21;
      a->len[k] &= ~NUM_TAG;
    }
  }
}

/* ---------------------------------------------------------------- connections */


/* Opens, authenticates and selects.  Never holds the pool mutex. */
/* Sends AUTH (with user if given) on a fresh connection.  0, or the reply's
 * code with the detail set. */
static int auth(gtask__redis *r, gtask__conn *c, const char *who, const char *user,
                const char *password) {
  if (!password || !password[0]) return 0;
  redisReply *rep = user && user[0] ? gtask__conn_command(c, "AUTH %s %s", user, password)
                                    : gtask__conn_command(c, "AUTH %s", password);
  int rc = 0;
  if (!rep) {
    gtask__set_error("redis %s: %s AUTH: %s", r->conf->describe, who, c->errstr);
    rc = GTASK_ECONN;
  } else if (rep->type == REDIS_REPLY_ERROR) {
    gtask__set_error("redis %s: %s AUTH: %s", r->conf->describe, who, rep->str);
    rc = gtask__redis_reply_rc(rep->str);
  }
  if (rep) freeReplyObject(rep);
  return rc;
}

/* Sentinel: asks every sentinel that answers for the master (SENTINEL
 * MASTER) and takes the answer of the highest config epoch.  Right after a
 * failover, a sentinel that has not heard of it yet (they learn from each
 * other within about 2 s) still names the old master, which keeps taking
 * writes until it is converted -- writes the failover then loses.  host and
 * *port receive the address. */
static int ask_sentinels(gtask__redis *r, char *host, size_t hostlen, int *port) {
  const gtask_redis_conf *cf = r->conf;
  char why[256] = "no sentinel answered";
  long long best_epoch = -1;
  for (int i = 0; i < cf->nsentinels; i++) {
    gtask__endpoint ep = {.host = cf->sentinel_host[i], .port = cf->sentinel_port[i],
                          .tls = r->tls, .tls_name = cf->tls_sni, .tls_verify = !cf->tls_insecure};
    gtask__conn *c;
    char cwhy[256];
    if (gtask__conn_connect(&ep, cf->timeout_ms, &c, cwhy, sizeof(cwhy)) != 0) {
      gtask__fmt(why, sizeof(why), "sentinel %s:%d: %s", ep.host, ep.port, cwhy);
      continue;
    }
    int rc = auth(r, c, "sentinel", cf->sentinel_user, cf->sentinel_password);
    redisReply *rep = rc ? NULL : gtask__conn_command(c, "SENTINEL MASTER %s", cf->master_name);
    if (rep && rep->type == REDIS_REPLY_ARRAY) {
      const char *ip = NULL, *pt = NULL, *ep_s = NULL, *flags = "";
      for (size_t k = 0; k + 1 < rep->elements; k += 2) {
        const redisReply *f = rep->element[k], *v = rep->element[k + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        if (strcmp(f->str, "ip") == 0) ip = v->str;
        if (strcmp(f->str, "port") == 0) pt = v->str;
        if (strcmp(f->str, "config-epoch") == 0) ep_s = v->str;
        if (strcmp(f->str, "flags") == 0) flags = v->str;
      }
      long long epoch = ep_s ? strtoll(ep_s, NULL, 10) : 0;
      if (ip && pt && epoch > best_epoch && !strstr(flags, "o_down")) {
        best_epoch = epoch;
        gtask__fmt(host, hostlen, "%s", ip);
        *port = (int)strtol(pt, NULL, 10);
      } else if (ip && pt && best_epoch < 0) {
        gtask__fmt(why, sizeof(why), "sentinel %s:%d: the master %s:%s is down", ep.host, ep.port,
                   ip, pt);
      }
    } else if (rc) {
      gtask__fmt(why, sizeof(why), "sentinel %s:%d: %s", ep.host, ep.port, gtask_last_error());
    } else {
      gtask__fmt(why, sizeof(why), "sentinel %s:%d: %s", ep.host, ep.port,
                 !rep ? c->errstr
                 : rep->type == REDIS_REPLY_ERROR ? rep->str
                                                   : "unexpected reply to SENTINEL MASTER");
    }
    if (rep) freeReplyObject(rep);
    gtask__conn_free(c);
  }
  if (best_epoch >= 0) return 0;
  gtask__set_error("redis %s: cannot find master \"%s\": %s", cf->describe, cf->master_name, why);
  return GTASK_ECONN;
}

/* A server the sentinels named must say it is the master (ROLE): during a
 * failover they may still name the old one, now a replica. */
static int check_master(gtask__redis *r, gtask__conn *c, const char *host, int port) {
  redisReply *rep = gtask__conn_command(c, "ROLE");
  int rc = 0;
  if (!rep) {
    gtask__set_error("redis %s: ROLE at %s:%d: %s", r->conf->describe, host, port, c->errstr);
    rc = GTASK_ECONN;
  } else if (rep->type == REDIS_REPLY_ERROR) {
    gtask__set_error("redis %s: ROLE at %s:%d: %s", r->conf->describe, host, port, rep->str);
    rc = gtask__redis_reply_rc(rep->str);
  } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
             rep->element[0]->type != REDIS_REPLY_STRING ||
             strcmp(rep->element[0]->str, "master") != 0) {
    gtask__set_error("redis %s: %s:%d is not the master (yet): a failover is under way",
                     r->conf->describe, host, port);
    rc = GTASK_ECONN;
  }
  if (rep) freeReplyObject(rep);
  return rc;
}

unsigned gtask__redis_gen(gtask__redis *r) { return atomic_load(&r->gen); }

/* Sentinel: subscribes to +switch-master on one sentinel after another and
 * bumps r->gen when our master switches, so that no connection to the old
 * master is lent again.  Reads wake every 200 ms to see stop_watch. */
static void *watch_main(void *arg) {
  gtask__redis *r = arg;
  const gtask_redis_conf *cf = r->conf;
  gtask__block_sigpipe();
  int i = 0;
  while (!atomic_load(&r->stop_watch)) {
    i = (i + 1) % cf->nsentinels;
    gtask__endpoint ep = {.host = cf->sentinel_host[i], .port = cf->sentinel_port[i],
                          .tls = r->tls, .tls_name = cf->tls_sni, .tls_verify = !cf->tls_insecure};
    gtask__conn *c = NULL;
    char why[256];
    redisReply *rep = NULL;
    if (gtask__conn_connect(&ep, cf->timeout_ms, &c, why, sizeof(why)) == 0 &&
        auth(r, c, "sentinel", cf->sentinel_user, cf->sentinel_password) == 0 &&
        (rep = gtask__conn_command(c, "SUBSCRIBE +switch-master")) != NULL) {
      freeReplyObject(rep);
      gtask__conn_set_timeout(c, 250); /* a read never outlasts a stop request by much */
      while (!atomic_load(&r->stop_watch)) {
        int got = gtask__conn_poll_reply(c, 200, &rep);
        if (got < 0) break;
        if (got == 0) continue;
        /* ["message", "+switch-master", "NAME OLDIP OLDPORT NEWIP NEWPORT"] */
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
            rep->element[2]->type == REDIS_REPLY_STRING) {
          const char *msg = rep->element[2]->str;
          size_t nlen = strlen(cf->master_name);
          if (strncmp(msg, cf->master_name, nlen) == 0 && msg[nlen] == ' ') {
            atomic_fetch_add(&r->gen, 1);
            gtask__log(GTASK_LOG_INFO, "redis %s: the master switched (%s)", cf->describe, msg + nlen + 1);
          }
        }
        freeReplyObject(rep);
      }
    }
    gtask__conn_free(c);
    /* A sentinel gone: the next one, after a pause (checking stop meanwhile). */
    for (int k = 0; k < 5 && !atomic_load(&r->stop_watch); k++) {
      struct timespec ts = {0, 100 * 1000 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

static int connect_one(gtask__redis *r, gtask__conn **out) {
  const gtask_redis_conf *cf = r->conf;
  gtask__endpoint ep = {.host = cf->host, .port = cf->port, .unix_path = cf->unix_path,
                        .tls = r->tls, .tls_name = cf->tls_sni, .tls_verify = !cf->tls_insecure};
  char master[256];
  int rc;
  unsigned gen = atomic_load(&r->gen); /* before asking: a switch after it is seen */
  if (cf->nsentinels > 0) {
    rc = ask_sentinels(r, master, sizeof(master), &ep.port);
    if (rc) return rc;
    ep.host = master;
  }
  char why[256];
  gtask__conn *c;
  rc = gtask__conn_connect(&ep, cf->timeout_ms, &c, why, sizeof(why));
  if (rc) {
    if (rc == GTASK_ENOMEM)
      gtask__set_error("redis %s: cannot allocate a connection", cf->describe);
    else if (cf->nsentinels > 0)
      gtask__set_error("redis %s: master at %s:%d: %s", cf->describe, ep.host, ep.port, why);
    else
      gtask__set_error("redis %s: %s", cf->describe, why);
    return rc;
  }
  if (cf->nsentinels > 0) {
    rc = auth(r, c, "master", cf->user, cf->password);
    if (rc == 0) rc = check_master(r, c, ep.host, ep.port);
    if (rc) {
      gtask__conn_free(c);
      return rc;
    }
    if (cf->db != 0) {
      redisReply *rep = gtask__conn_command(c, "SELECT %d", cf->db);
      rc = !rep ? GTASK_ECONN : rep->type == REDIS_REPLY_ERROR ? gtask__redis_reply_rc(rep->str) : 0;
      if (rc) gtask__set_error("redis %s: SELECT: %s", cf->describe, rep ? rep->str : c->errstr);
      if (rep) freeReplyObject(rep);
      if (rc) {
        gtask__conn_free(c);
        return rc;
      }
    }
    c->gen = gen;
    c->owner = r;
    c->live = &r->live;
    atomic_fetch_add_explicit(&r->live, 1, memory_order_relaxed);
    *out = c;
    return 0;
  }

  redisReply *rep = NULL;
  if (cf->password && cf->password[0]) {
    if (cf->user && cf->user[0])
      rep = gtask__conn_command(c, "AUTH %s %s", cf->user, cf->password);
    else
      rep = gtask__conn_command(c, "AUTH %s", cf->password);
    if (!rep || rep->type == REDIS_REPLY_ERROR) goto fail;
    freeReplyObject(rep);
  }
  if (cf->db != 0) {
    rep = gtask__conn_command(c, "SELECT %d", cf->db);
    if (!rep || rep->type == REDIS_REPLY_ERROR) goto fail;
    freeReplyObject(rep);
  }
  c->gen = gen;
  c->owner = r;
  c->live = &r->live;
  atomic_fetch_add_explicit(&r->live, 1, memory_order_relaxed);
  *out = c;
  return 0;
fail:
  gtask__set_error("redis %s: %s", cf->describe,
                   rep ? rep->str : (c->err ? c->errstr : "no reply"));
  rc = rep ? gtask__redis_reply_rc(rep->str) : GTASK_ECONN;
  if (rep) freeReplyObject(rep);
  gtask__conn_free(c);
  return rc;
}

static int load_scripts(gtask__redis *r, gtask__conn *c) {
  for (int s = 0; s < GTASK__LUA_COUNT; s++) {
    redisReply *rep = gtask__conn_command(c, "SCRIPT LOAD %s", gtask__lua_src[s]);
    if (!rep) {
      gtask__set_error("redis %s: SCRIPT LOAD: %s", r->conf->describe, c->errstr);
      return GTASK_ECONN;
    }
    if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
      gtask__set_error("redis %s: SCRIPT LOAD: %s", r->conf->describe,
                       rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
      freeReplyObject(rep);
      return GTASK_EREDIS;
    }
    pthread_mutex_lock(&r->mu);
    memcpy(r->sha[s], rep->str, 41);
    pthread_mutex_unlock(&r->mu);
    if (r->parent) { /* the cluster handle keeps them for nodes that come later */
      pthread_mutex_lock(&r->parent->mu);
      memcpy(r->parent->sha[s], rep->str, 41);
      pthread_mutex_unlock(&r->parent->mu);
    }
    freeReplyObject(rep);
  }
  return 0;
}

int gtask__redis_load_scripts(gtask__redis *r) {
  gtask__conn *c;
  int rc = gtask__redis_get(r, &c);
  if (rc) return rc;
  rc = load_scripts(r, c);
  gtask__redis_put(r, c);
  return rc;
}

/* The TLS context of a conf: TLS 1.2 or later, the CA store (the conf's file
 * or directory, else the system's), the client certificate if any.  Read
 * once per pool: a bad file is an error at creation, not at each connect. */
static int tls_context(const gtask_redis_conf *cf, SSL_CTX **out) {
  *out = NULL;
  if (!cf->tls) return 0;
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    gtask__set_error("redis %s: cannot create a TLS context", cf->describe);
    return GTASK_ENOMEM;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  const char *what = NULL;
  if (cf->tls_ca || cf->tls_capath) {
    if (SSL_CTX_load_verify_locations(ctx, cf->tls_ca, cf->tls_capath) != 1)
      what = cf->tls_ca ? "the CA file" : "the CA directory";
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    what = "the system CA store";
  }
  if (!what && cf->tls_cert) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cf->tls_cert) != 1)
      what = "the client certificate";
    else if (SSL_CTX_use_PrivateKey_file(ctx, cf->tls_key, SSL_FILETYPE_PEM) != 1)
      what = "the client key";
    else if (SSL_CTX_check_private_key(ctx) != 1)
      what = "the client key (it does not match the certificate)";
  }
  if (what) {
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0) last = e;
    char why[200] = "";
    if (last) ERR_error_string_n(last, why, sizeof(why));
    gtask__set_error("redis %s: TLS: cannot load %s: %s", cf->describe, what,
                     why[0] ? why : "unreadable");
    SSL_CTX_free(ctx);
    return GTASK_EINVAL;
  }
  if (cf->tls_insecure)
    gtask__log(GTASK_LOG_WARN,
               "redis %s: TLS without certificate checks (insecure): the connection is "
               "encrypted but the server is not authenticated",
               cf->describe);
  *out = ctx;
  return 0;
}

/* A pool for conf, without connecting; tls: the TLS context to share (a
 * cluster node's), or NULL to make the conf's. */
static int pool_new(const gtask_redis_conf *conf, SSL_CTX *tls, gtask__redis **out) {
  gtask__redis *r = gtask__calloc(1, sizeof(*r));
  if (!r) return GTASK_ENOMEM;
  int rc = gtask__redis_conf_copy(conf, &r->conf);
  if (rc) {
    gtask__free(r);
    return rc;
  }
  if (tls) {
    SSL_CTX_up_ref(tls);
    r->tls = tls;
  } else {
    rc = tls_context(r->conf, &r->tls);
  }
  if (rc) {
    gtask_redis_conf_free(r->conf);
    gtask__free(r);
    return rc;
  }
  r->idle = gtask__calloc((size_t)r->conf->pool_size, sizeof(*r->idle));
  r->own_idle = gtask__calloc((size_t)r->conf->pool_size, sizeof(*r->own_idle));
  if (!r->idle || !r->own_idle) {
    gtask__free(r->idle);
    gtask__free(r->own_idle);
    SSL_CTX_free(r->tls);
    gtask_redis_conf_free(r->conf);
    gtask__free(r);
    return GTASK_ENOMEM;
  }
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  *out = r;
  return 0;
}

int gtask__redis_node_new(gtask__redis *parent, const char *host, int port, gtask__redis **out) {
  gtask_redis_conf *cf;
  int rc = gtask__redis_conf_copy(parent->conf, &cf);
  if (rc) return rc;
  char *h = gtask__strdup(host);
  if (!h) {
    gtask_redis_conf_free(cf);
    return GTASK_ENOMEM;
  }
  gtask__free(cf->host);
  cf->host = h;
  cf->port = port;
  cf->cluster = false;
  gtask__fmt(cf->describe, sizeof(cf->describe), strchr(host, ':') ? "%s node [%s]:%d" : "%s node %s:%d",
             parent->conf->describe, host, port);
  rc = pool_new(cf, parent->tls, out);
  gtask_redis_conf_free(cf);
  if (rc == 0) (*out)->parent = parent;
  return rc;
}

int gtask__redis_new(const gtask_redis_conf *conf, gtask__redis **out) {
  gtask__redis *r;
  int rc = pool_new(conf, NULL, &r);
  if (rc) return rc;
  if (r->conf->cluster)
    rc = gtask__cluster_new(r);
  else
    rc = gtask__redis_load_scripts(r);
  if (rc == 0 && r->conf->nsentinels > 0) {
    if (pthread_create(&r->watcher, NULL, watch_main, r) == 0)
      r->watching = true;
    else
      gtask__log(GTASK_LOG_WARN, "redis %s: cannot start the +switch-master watcher; a failover "
                 "is noticed when the old master refuses writes", r->conf->describe);
  }
  if (rc) {
    gtask__redis_free(r);
    return rc;
  }
  *out = r;
  return 0;
}

void gtask__redis_free(gtask__redis *r) {
  if (!r) return;
  if (r->watching) {
    atomic_store(&r->stop_watch, true);
    pthread_join(r->watcher, NULL);
  }
  gtask__cluster_free(r->cluster);
  for (int k = 0; k < r->nidle; k++) gtask__conn_free(r->idle[k]);
  for (int k = 0; k < r->nown_idle; k++) gtask__conn_free(r->own_idle[k]);
  pthread_mutex_destroy(&r->mu);
  pthread_cond_destroy(&r->cv);
  gtask__free(r->idle);
  gtask__free(r->own_idle);
  SSL_CTX_free(r->tls);
  gtask_redis_conf_free(r->conf);
  gtask__free(r);
}

static bool idle_conn_dead(gtask__conn *c) { return gtask__conn_idle_dead(c); }

/* Logs the first failed connect of an outage and the first success after it. */
static void note_outage(gtask__redis *r, int rc) {
  pthread_mutex_lock(&r->mu);
  bool was_out = r->outage;
  r->outage = rc != 0;
  pthread_mutex_unlock(&r->mu);
  if (rc && !was_out) gtask__log(GTASK_LOG_WARN, "%s", gtask_last_error());
  if (!rc && was_out) gtask__log(GTASK_LOG_INFO, "redis %s: reachable again", r->conf->describe);
}

static int redis_get(gtask__redis *r, gtask__conn **out);

int gtask__redis_get(gtask__redis *r, gtask__conn **out) {
  if (r->cluster) r = gtask__redis_route(r, "", 0); /* no key: any master */
  gtask__sigpipe_enter();
  int rc = redis_get(r, out);
  if (rc) gtask__sigpipe_leave(true);
  return rc;
}

static int redis_get(gtask__redis *r, gtask__conn **out) {
  /* Every borrow has a deadline: the conf's timeout.  Pool connections are
   * held for one command or one pipeline, never for a blocking one (those
   * take connections of their own), so a borrower that waits that long is
   * facing a pool too small for its threads, and is told so. */
  int64_t deadline = gtask__mono_ms() + r->conf->timeout_ms;
  pthread_mutex_lock(&r->mu);
  for (;;) {
    while (r->nidle > 0) {
      gtask__conn *c = r->idle[--r->nidle];
      if (c->gen == atomic_load(&r->gen) && !idle_conn_dead(c)) {
        *out = c;
        pthread_mutex_unlock(&r->mu);
        return 0;
      }
      r->nopen--;
      pthread_mutex_unlock(&r->mu);
      gtask__conn_free(c); /* never call into hiredis under the pool mutex */
      pthread_mutex_lock(&r->mu);
    }
    if (r->nopen < r->conf->pool_size) break;
    if (gtask__mono_ms() >= deadline) {
      int n = r->nopen;
      pthread_mutex_unlock(&r->mu);
      gtask__set_error("redis %s: no free connection: all %d of the pool are in use "
                       "(waited %lld ms; raise the pool size)",
                       r->conf->describe, n, (long long)r->conf->timeout_ms);
      return GTASK_ETIMEDOUT;
    }
    struct timespec ts = {(time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000L};
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
  }
  r->nopen++;
  pthread_mutex_unlock(&r->mu);

  int rc = connect_one(r, out);

  pthread_mutex_lock(&r->mu);
  if (rc) {
    r->nopen--;
    pthread_cond_signal(&r->cv);
  }
  bool reconnect = rc == 0 && r->nlost > 0;
  if (reconnect) r->nlost--;
  pthread_mutex_unlock(&r->mu);
  if (rc) atomic_fetch_add(&gtask__redis_errors, 1);
  if (reconnect) atomic_fetch_add(&gtask__redis_reconnects, 1);
  note_outage(r, rc);
  if (rc) gtask__cluster_stale(r->parent); /* a failed node: has a replica taken over? */
  return rc;
}

static void redis_put(gtask__redis *r, gtask__conn *c);

/* A MOVED read on c (on whatever path): correct the map now. */
static void note_moved(gtask__redis *r, gtask__conn *c) {
  if (!c->moved[0]) return;
  gtask__cluster_moved(r, c->moved);
  c->moved[0] = '\0';
}

void gtask__redis_close_idle(gtask__redis *r) {
  pthread_mutex_lock(&r->mu);
  int n = r->nidle, no = r->nown_idle;
  gtask__conn **v = gtask__malloc((size_t)(n + no + 1) * sizeof(*v));
  if (v) {
    memcpy(v, r->idle, (size_t)n * sizeof(*v));
    memcpy(v + n, r->own_idle, (size_t)no * sizeof(*v));
    r->nidle = r->nown_idle = 0;
    r->nopen -= n;
  }
  pthread_mutex_unlock(&r->mu);
  if (!v) return;
  for (int k = 0; k < n + no; k++) gtask__conn_free(v[k]);
  gtask__free(v);
}

void gtask__redis_put(gtask__redis *r, gtask__conn *c) {
  if (!c) return;
  if (c->owner) r = c->owner;
  note_moved(r, c);
  bool io_error = c->err != 0;
  redis_put(r, c);
  gtask__sigpipe_leave(io_error);
}

static void redis_put(gtask__redis *r, gtask__conn *c) {
  if (c->err) atomic_fetch_add(&gtask__redis_errors, 1);
  pthread_mutex_lock(&r->mu);
  if (c->err && r->nlost < r->conf->pool_size) r->nlost++;
  if (c->err || r->nidle >= r->conf->pool_size || c->gen != atomic_load(&r->gen)) {
    r->nopen--;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    gtask__conn_free(c);
    return;
  }
  r->idle[r->nidle++] = c;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* ---------------------------------------------------------------- own connections
 *
 * A command that blocks (a worker's lease, a client's result wait) holds its
 * connection for as long as it blocks.  Taken from the pool, such commands
 * could hold every connection and starve the short ones -- a server's result
 * writes, on which the very waits wait: a deadlock.  So they take connections
 * of their own, never counted against the pool: one per blocked thread, which
 * the caller bounds (a thread blocks on one command at a time).  Up to
 * pool_size of them are kept idle for reuse. */

int gtask__redis_get_own(gtask__redis *r, gtask__conn **out) {
  if (r->cluster) r = gtask__redis_route(r, "", 0);
  gtask__sigpipe_enter();
  pthread_mutex_lock(&r->mu);
  while (r->nown_idle > 0) {
    gtask__conn *c = r->own_idle[--r->nown_idle];
    if (c->gen == atomic_load(&r->gen) && !idle_conn_dead(c)) {
      pthread_mutex_unlock(&r->mu);
      *out = c;
      return 0;
    }
    pthread_mutex_unlock(&r->mu);
    gtask__conn_free(c);
    pthread_mutex_lock(&r->mu);
  }
  pthread_mutex_unlock(&r->mu);
  int rc = connect_one(r, out);
  note_outage(r, rc);
  if (rc) {
    gtask__cluster_stale(r->parent);
    gtask__sigpipe_leave(true);
  }
  return rc;
}

void gtask__redis_put_own(gtask__redis *r, gtask__conn *c) {
  if (!c) return;
  if (c->owner) r = c->owner;
  note_moved(r, c);
  bool io_error = c->err != 0;
  pthread_mutex_lock(&r->mu);
  if (!c->err && r->nown_idle < r->conf->pool_size && c->gen == atomic_load(&r->gen)) {
    r->own_idle[r->nown_idle++] = c;
    c = NULL;
  }
  pthread_mutex_unlock(&r->mu);
  if (c) gtask__conn_free(c);
  gtask__sigpipe_leave(io_error);
}

/* ---------------------------------------------------------------- commands */

/* Reads n replies into pre[] (all NULL if one cannot be read). */
static bool read_replies(gtask__conn *c, size_t n, redisReply **pre) {
  for (size_t k = 0; k < n; k++) {
    if (gtask__conn_get_reply(c, &pre[k]) != REDIS_OK) {
      for (size_t j = 0; j < k; j++) freeReplyObject(pre[j]);
      for (size_t j = 0; j < n; j++) pre[j] = NULL;
      return false;
    }
  }
  return true;
}

/* Sends head[0..nh) followed by a's arguments as one command and reads its
 * reply (NULL: the connection failed, c->err says why).  The RESP encoding is
 * ours: hiredis' formatter (redisFormatCommandArgv) formats each length with sprintf, which was
 * a seventh of a worker's instructions in a drain.  It is sent after the npre
 * commands already appended to c, in one write; their replies go to pre[].
 * On failure, *in_doubt tells whether Redis may have run what was sent: every
 * byte was written (the reply was lost: a read timeout, a connection cut after
 * the write), or some were and earlier commands of the pipeline may have run.
 * A command cut short in its own bytes never runs: Redis executes only whole
 * commands. */
static int no_reply(gtask__redis *r, gtask__conn *c, const char *what, size_t wlen, bool in_doubt);
static int reply_error(gtask__conn *c, const char *err);

/* Appends head[0..nh) followed by a's arguments to c as one command.  The
 * RESP encoding is ours: hiredis' formatter (redisFormatCommandArgv) formats
 * each length with sprintf, which was a seventh of a worker's instructions in
 * a drain.  REDIS_OK, or REDIS_ERR (c->err). */
static int append_command(gtask__conn *c, const char *const *head, const size_t *hlen, size_t nh,
                          const gtask__argv *a) {
  size_t n = nh + a->n, size = 1 + 20 + 2;
  for (size_t k = 0; k < n; k++) size += 1 + 20 + 2 + (k < nh ? hlen[k] : a->len[k - nh]) + 2;
  char *buf = gtask__malloc(size);
  if (!buf) { /* the callers report c->errstr (and drop the connection) */
    c->err = REDIS_ERR_OOM;
    snprintf(c->errstr, sizeof(c->errstr), "out of memory formatting a command");
    return REDIS_ERR;
  }
  char *p = buf;
  *p++ = '*';
  p += dec_u64(p, n);
  *p++ = '\r', *p++ = '\n';
  for (size_t k = 0; k < n; k++) {
    const char *v = k < nh ? head[k] : a->v[k - nh];
    size_t len = k < nh ? hlen[k] : a->len[k - nh];
    *p++ = '$';
    p += dec_u64(p, len);
    *p++ = '\r', *p++ = '\n';
    if (len) memcpy(p, v, len);
    p += len;
    *p++ = '\r', *p++ = '\n';
  }
  int ok = gtask__conn_append(c, buf, (size_t)(p - buf));
  gtask__free(buf);
  return ok;
}

/* Sends head[0..nh) followed by a's arguments as one command and reads its
 * reply (NULL: the connection failed, c->err says why).
 * It is sent after the npre commands already appended to c, in one write;
 * their replies go to pre[].
 * On failure, *in_doubt tells whether Redis may have run what was sent: every
 * byte was written (the reply was lost: a read timeout, a connection cut after
 * the write), or some were and earlier commands of the pipeline may have run.
 * A command cut short in its own bytes never runs: Redis executes only whole
 * commands. */
static redisReply *command(gtask__conn *c, const char *const *head, const size_t *hlen, size_t nh,
                           const gtask__argv *a, size_t npre, redisReply **pre, bool *in_doubt) {
  *in_doubt = false;
  if (append_command(c, head, hlen, nh, a) != REDIS_OK) return NULL;
  redisReply *rep = NULL;
  size_t total = gtask__conn_unsent(c); /* the pipeline: npre commands, then this one */
  if ((npre && !read_replies(c, npre, pre)) || gtask__conn_get_reply(c, &rep) != REDIS_OK) {
    size_t written = total - gtask__conn_unsent(c);
    *in_doubt = written == total || (npre && written > 0);
    rep = NULL;
  }
  return rep;
}

int gtask__redis_send(gtask__redis *r, gtask__conn *c, gtask__argv *a) {
  if (c->owner) r = c->owner;
  if (a->oom) return GTASK_ENOMEM;
  argv_fix(a);
  if (append_command(c, NULL, NULL, 0, a) != REDIS_OK || gtask__conn_flush(c) != REDIS_OK) {
    gtask__set_error("redis %s: %.*s: %s", r->conf->describe, (int)a->len[0], a->v[0], c->errstr);
    if (!c->err) c->err = REDIS_ERR_IO;
    return GTASK_ECONN;
  }
  return 0;
}

int gtask__redis_recv(gtask__redis *r, gtask__conn *c, const char *what, redisReply **reply) {
  if (c->owner) r = c->owner;
  *reply = NULL;
  redisReply *rep;
  if (gtask__conn_get_reply(c, &rep) != REDIS_OK)
    return no_reply(r, c, what, strlen(what), true);
  if (rep->type == REDIS_REPLY_ERROR) {
    gtask__set_error("redis %s: %s: %s", r->conf->describe, what, rep->str);
    int rc = reply_error(c, rep->str);
    if (strncmp(rep->str, "MOVED", 5) == 0) gtask__cluster_moved(r, rep->str);
    freeReplyObject(rep);
    return rc;
  }
  *reply = rep;
  return 0;
}

/* The error of a command that got no reply: GTASK_EINDOUBT if Redis may have
 * run it, else GTASK_ECONN.  Either way the connection is never lent again. */
static int no_reply(gtask__redis *r, gtask__conn *c, const char *what, size_t wlen, bool in_doubt) {
  const char *why = c->errstr[0] ? c->errstr : "no reply";
  if (in_doubt)
    gtask__set_error("redis %s: %.*s: sent, but no reply (%s): its outcome is unknown",
                     r->conf->describe, (int)wlen, what, why);
  else
    gtask__set_error("redis %s: %s", r->conf->describe, why);
  if (!c->err) c->err = REDIS_ERR_IO;
  return in_doubt ? GTASK_EINDOUBT : GTASK_ECONN;
}

int gtask__redis_reply_rc(const char *err) {
  static const struct {
    const char *prefix;
    int rc;
  } map[] = {
      /* The server cannot serve now, but will: retried like a refused connection. */
      {"LOADING", GTASK_ECONN},     /* restarting, reading its data */
      {"BUSY ", GTASK_ECONN},       /* a script runs past lua-time-limit */
      {"OOM", GTASK_ECONN},         /* at maxmemory: writes refused until memory frees */
      {"READONLY", GTASK_ECONN},    /* a replica now (failover): find the master */
      {"MASTERDOWN", GTASK_ECONN},  /* a replica cut off from its master */
      {"TRYAGAIN", GTASK_ECONN},    /* cluster: keys of a slot being migrated */
      {"CLUSTERDOWN", GTASK_ECONN}, /* cluster: a slot without a node */
      {"UNBLOCKED", GTASK_ECONN},   /* a blocked command ended by a role change */
      {"MOVED ", GTASK_ECONN},      /* cluster: the slot is served elsewhere (map refreshed) */
      {"ASK ", GTASK_ECONN},        /* cluster: the key is being migrated */
      /* Permanent for this user until an operator changes the ACL. */
      {"NOPERM", GTASK_ENOPERM},
  };
  for (size_t k = 0; k < sizeof(map) / sizeof(map[0]); k++)
    if (strncmp(err, map[k].prefix, strlen(map[k].prefix)) == 0) return map[k].rc;
  return GTASK_EREDIS;
}

/* The code of an error reply on c.  A server that is no longer the master
 * (a failover demoted it: READONLY, UNBLOCKED, MASTERDOWN) will not be again:
 * the connection is dropped, so that the next one finds the new master (with
 * Sentinel, by asking the sentinels again). */
static int reply_error(gtask__conn *c, const char *err) {
  if (strncmp(err, "READONLY", 8) == 0 || strncmp(err, "UNBLOCKED", 9) == 0 ||
      strncmp(err, "MASTERDOWN", 10) == 0) {
    c->err = REDIS_ERR_OTHER;
    gtask__fmt(c->errstr, sizeof(c->errstr), "the server is not the master any more");
  }
  return gtask__redis_reply_rc(err);
}

int gtask__redis_cmd(gtask__redis *r, gtask__conn *c, gtask__argv *a, redisReply **reply) {
  return gtask__redis_cmd_after(r, c, 0, NULL, a, reply);
}

/* Cluster: after an error reply `err` of node *at on *cur (hop so far),
 * moves the command to where the cluster says it runs: *at and *cur change
 * (a connection borrowed here is returned first; *lent says whether *cur is
 * ours to return) and *ask asks for ASKING.  False if err is not a
 * redirection or a retry to follow (or the borrow failed: *rc says why). */
static bool follow(gtask__redis **at, gtask__conn **cur, bool *lent, bool *ask, const char *err,
                   int hop, int *rc) {
  gtask__redis *to;
  bool was_ask = *ask;
  if (!(*at)->parent || gtask__cluster_redirect(*at, err, hop, &to, ask) != 0) return false;
  if (to == *at && !*ask) {
    /* TRYAGAIN, CLUSTERDOWN: again on the same connection -- with ASKING
     * again if the node is the importing one an ASK sent us to (a script
     * whose keys are not all there yet gets TRYAGAIN from it). */
    *ask = was_ask;
    return true;
  }
  if (*lent) gtask__redis_put(*at, *cur);
  *lent = false;
  *cur = NULL;
  *at = to;
  *rc = gtask__redis_get(to, cur);
  if (*rc) return false;
  *lent = true;
  return true;
}

/* A lease: XREADGROUP, blocking or not. */
static bool is_lease(const gtask__argv *a) {
  return a->n > 0 && a->len[0] == 10 && strncasecmp(a->v[0], "XREADGROUP", 10) == 0;
}

/* Appends ASKING to c (its reply is read as the first of the pipeline). */
static int append_asking(gtask__conn *c) { return gtask__conn_append(c, "*1\r\n$6\r\nASKING\r\n", 16); }

int gtask__redis_cmd_after(gtask__redis *r, gtask__conn *c, size_t npre, redisReply **pre,
                           gtask__argv *a, redisReply **reply) {
  *reply = NULL;
  if (c->owner) r = c->owner;
  for (size_t k = 0; k < npre; k++) pre[k] = NULL;
  if (a->oom) {
    if (npre && !c->err) c->err = REDIS_ERR_OOM; /* its pipeline is unread: drop it */
    return GTASK_ENOMEM;
  }
  argv_fix(a);
  gtask__redis *at = r;
  gtask__conn *cur = c;
  bool lent = false, ask = false;
  int rc = 0;
  for (int hop = 0;; hop++) {
    bool in_doubt;
    redisReply *asking = NULL, *rep;
    if (ask && append_asking(cur) != REDIS_OK) {
      rc = no_reply(at, cur, a->v[0], a->len[0], false);
      break;
    }
    rep = command(cur, NULL, NULL, 0, a, ask ? 1 : npre, ask ? &asking : pre, &in_doubt);
    if (asking) freeReplyObject(asking);
    if (!rep) {
      rc = no_reply(at, cur, a->v[0], a->len[0], in_doubt);
      break;
    }
    /* Only a command on its own follows the cluster: a pipeline's earlier
     * replies came from the node that redirected it (the caller sees the
     * error; the slot's entry is corrected from MOVED).  Nor does a lease
     * (XREADGROUP, which may block): it would block on a pool connection
     * that an interrupt cannot wake; the broker leases again at once on its
     * own connection to the new node. */
    if (rep->type == REDIS_REPLY_ERROR && (npre == 0 || ask) && !is_lease(a) &&
        follow(&at, &cur, &lent, &ask, rep->str, hop, &rc)) {
      freeReplyObject(rep);
      continue;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
      if (rc == 0) {
        gtask__set_error("redis %s: %.*s: %s", at->conf->describe, (int)a->len[0], a->v[0], rep->str);
        rc = reply_error(cur, rep->str);
        if (strncmp(rep->str, "MOVED", 5) == 0) gtask__cluster_moved(at, rep->str);
      }
      freeReplyObject(rep);
      break;
    }
    *reply = rep;
    break;
  }
  if (lent) gtask__redis_put(at, cur);
  return rc;
}

redisReply *gtask__redis_command(gtask__conn *c, const char *fmt, ...) {
  char *cmd = NULL;
  va_list ap;
  va_start(ap, fmt);
  int len = redisvFormatCommand(&cmd, fmt, ap);
  va_end(ap);
  if (len < 0) {
    c->err = REDIS_ERR_OOM;
    gtask__fmt(c->errstr, sizeof(c->errstr), "out of memory formatting a command");
    return NULL;
  }
  gtask__redis *at = c->owner;
  gtask__conn *cur = c;
  bool lent = false, ask = false;
  redisReply *rep = NULL;
  for (int hop = 0;; hop++) {
    redisReply *asking = NULL;
    bool ok = (!ask || append_asking(cur) == REDIS_OK) &&
              gtask__conn_append(cur, cmd, (size_t)len) == REDIS_OK &&
              (!ask || gtask__conn_get_reply(cur, &asking) == REDIS_OK) &&
              gtask__conn_get_reply(cur, &rep) == REDIS_OK;
    if (asking) freeReplyObject(asking);
    if (!ok) {
      rep = NULL;
      if (cur != c) {
        /* A node it was sent to failed: c itself is sound and stays lent,
         * so the caller's "no reply" finds the reason in gtask_last_error(). */
        gtask__set_error("redis %s: %s", at->conf->describe, cur->errstr);
        gtask__fmt(c->errstr, sizeof(c->errstr), "%s: %s", at->conf->describe, cur->errstr);
      }
      break;
    }
    int rc = 0;
    if (rep->type != REDIS_REPLY_ERROR || !at ||
        !follow(&at, &cur, &lent, &ask, rep->str, hop, &rc))
      break;
    freeReplyObject(rep); /* not run there: again where the cluster says */
    rep = NULL;
  }
  free(cmd);
  if (lent) gtask__redis_put(at, cur);
  return rep;
}

/* WAIT for the conf's replicas after script s ran.  A send or requeue that
 * they did not confirm is GTASK_EINDOUBT; a finish (store) is kept, with a
 * warning: if the master fails before a replica has it, the task is still
 * leased on the new master and runs again. */
static int wait_replicas(gtask__redis *r, gtask__conn *c, gtask__script s) {
  const gtask_redis_conf *cf = r->conf;
  gtask__conn_set_timeout(c, cf->wait_replicas_ms + cf->timeout_ms);
  redisReply *rep = gtask__conn_command(c, "WAIT %d %lld", cf->wait_replicas,
                                        (long long)cf->wait_replicas_ms);
  gtask__conn_set_timeout(c, cf->timeout_ms);
  if (!rep) {
    gtask__set_error("redis %s: %s: applied, but WAIT got no reply (%s): it may not reach a replica",
                     cf->describe, gtask__lua_name[s], c->errstr);
    return GTASK_EINDOUBT;
  }
  long long got = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
  if (rep->type == REDIS_REPLY_ERROR)
    gtask__set_error("redis %s: WAIT: %s", cf->describe, rep->str);
  freeReplyObject(rep);
  if (got >= cf->wait_replicas) return 0;
  if (got >= 0)
    gtask__set_error("redis %s: %s: applied on the master, but %lld of %d replicas confirmed it "
                     "within %lld ms: a failover now would lose it",
                     cf->describe, gtask__lua_name[s], got, cf->wait_replicas,
                     (long long)cf->wait_replicas_ms);
  if (s == GTASK__LUA_FINISH || s == GTASK__LUA_STORE) {
    gtask__log(GTASK_LOG_WARN, "%s", gtask_last_error());
    return 0;
  }
  return GTASK_EINDOUBT;
}

atomic_ulong gtask__eval_count[GTASK__LUA_COUNT];

/* The hash tag of key k of a, or the whole key if it has none. */
static void tag_of(const gtask__argv *a, size_t k, const char **t, size_t *len) {
  const char *key = a->v[k], *open = memchr(key, '{', a->len[k]);
  const char *close = open ? memchr(open + 1, '}', a->len[k] - (size_t)(open - key) - 1) : NULL;
  if (close && close > open + 1) {
    *t = open + 1;
    *len = (size_t)(close - open - 1);
  } else {
    *t = key;
    *len = a->len[k];
  }
}

/* True if the first nkeys arguments of a hash to one slot: all with the same
 * tag (the rule gtask keeps), or else the same slot. */
static bool one_slot(const gtask__argv *a, size_t nkeys) {
  if (nkeys < 2) return true;
  const char *t0;
  size_t l0;
  tag_of(a, 0, &t0, &l0);
  for (size_t k = 1; k < nkeys && k < a->n; k++) {
    const char *t;
    size_t l;
    tag_of(a, k, &t, &l);
    if ((l != l0 || memcmp(t, t0, l) != 0) &&
        gtask__crc16(t, l) % 16384 != gtask__crc16(t0, l0) % 16384)
      return false;
  }
  return true;
}

int gtask__redis_eval(gtask__redis *r, gtask__conn *c, gtask__script s, size_t nkeys,
                      gtask__argv *a, redisReply **reply) {
  *reply = NULL;
  if (c->owner) r = c->owner;
  if (a->oom) return GTASK_ENOMEM;
  /* EVALSHA sha nkeys KEYS... ARGV... */
  char sha[41], nk[20];
  argv_fix(a);
  if (r->parent && !one_slot(a, nkeys)) {
    /* A cluster refuses it (CROSSSLOT); say which script, before sending. */
    gtask__set_error("redis %s: %s: its keys are not all in one slot (a bug: every key of a "
                     "call must carry the same {queue})", r->conf->describe, gtask__lua_name[s]);
    return GTASK_EINVAL;
  }
  atomic_fetch_add_explicit(&gtask__eval_count[s], 1, memory_order_relaxed);
  gtask__redis *at = r; /* where it runs: r, or where the cluster sent it */
  gtask__conn *cur = c;
  bool lent = false, ask = false, reloaded = false;
  int rc = 0;
  for (int hop = 0;; hop++) {
    /* NOSCRIPT below reloads it.  A cluster node's pool made after the
     * start has none yet: the same scripts have the same digests. */
    pthread_mutex_lock(&at->mu);
    memcpy(sha, at->sha[s], sizeof(sha));
    pthread_mutex_unlock(&at->mu);
    if (!sha[0] && at->parent) {
      pthread_mutex_lock(&at->parent->mu);
      memcpy(sha, at->parent->sha[s], sizeof(sha));
      pthread_mutex_unlock(&at->parent->mu);
    }
    const char *head[3] = {"EVALSHA", sha, nk};
    size_t hlen[3] = {7, 40, dec_u64(nk, nkeys)};
    bool in_doubt;
    redisReply *asking = NULL, *rep;
    if (ask && append_asking(cur) != REDIS_OK) {
      rc = no_reply(at, cur, gtask__lua_name[s], strlen(gtask__lua_name[s]), false);
      break;
    }
    rep = command(cur, head, hlen, 3, a, ask ? 1 : 0, &asking, &in_doubt);
    if (asking) freeReplyObject(asking);
    if (!rep) {
      rc = no_reply(at, cur, gtask__lua_name[s], strlen(gtask__lua_name[s]), in_doubt);
      break;
    }
    if (rep->type == REDIS_REPLY_ERROR && !reloaded && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
      /* The server lost its script cache (restart, SCRIPT FLUSH, a cluster
       * node new to us): a script that did not run changed nothing, so
       * reloading and running again is safe. */
      freeReplyObject(rep);
      gtask__log(GTASK_LOG_INFO, "redis %s: reloading scripts (NOSCRIPT)", at->conf->describe);
      reloaded = true;
      rc = load_scripts(at, cur);
      if (rc) break;
      continue; /* (with ASKING again: it lasts one command) */
    }
    if (rep->type == REDIS_REPLY_ERROR && follow(&at, &cur, &lent, &ask, rep->str, hop, &rc)) {
      freeReplyObject(rep);
      continue;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
      if (rc == 0) {
        gtask__set_error("redis %s: %s: %s", at->conf->describe, gtask__lua_name[s], rep->str);
        rc = reply_error(cur, rep->str);
        if (strncmp(rep->str, "MOVED", 5) == 0) gtask__cluster_moved(at, rep->str);
      }
      freeReplyObject(rep);
      break;
    }
    if (at->conf->wait_replicas > 0 && (s == GTASK__LUA_PUSH || s == GTASK__LUA_FINISH ||
                                        s == GTASK__LUA_STORE || s == GTASK__LUA_DEAD_REQUEUE)) {
      rc = wait_replicas(at, cur, s);
      if (rc) {
        freeReplyObject(rep);
        break;
      }
    }
    *reply = rep;
    break;
  }
  if (lent) gtask__redis_put(at, cur);
  return rc;
}

/* Appends len bytes of src at *p unless that would reach end (a key that does
 * not fit is cut: GTASK__KEY_MAX is far above what valid names make). */
static void key_part(char **p, char *end, const char *src, size_t len) {
  size_t room = (size_t)(end - *p);
  if (len > room) len = room;
  memcpy(*p, src, len);
  *p += len;
}

size_t gtask__redis_key(const gtask__redis *r, char *buf, size_t size, const char *queue,
                        const char *suffix, const char *id) {
  if (size == 0) return 0;
  char *p = buf, *end = buf + size - 1;
  key_part(&p, end, r->conf->prefix, strlen(r->conf->prefix));
  key_part(&p, end, ":{", 2);
  key_part(&p, end, queue, strlen(queue));
  key_part(&p, end, "}:", 2);
  key_part(&p, end, suffix, strlen(suffix));
  if (id) {
    key_part(&p, end, ":", 1);
    key_part(&p, end, id, strlen(id));
  }
  *p = '\0';
  return (size_t)(p - buf);
}
