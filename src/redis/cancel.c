/* redis/cancel.c -- cancelling a task on Redis (issue 18): the colocated
 * broker's cancel() and the backend's finals().
 *
 * cancel.lua must be told where the task's message is (a script cannot scan
 * a stream of a million entries without blocking the server): this side
 * finds the schedule member (ZSCAN MATCH <id>*) or the stream entry (XRANGE,
 * 1000 entries a command), and the script checks that it is still there
 * before it removes it.  A message that moved meanwhile (promoted, leased and
 * requeued) makes the script change nothing and answer 3: it is looked for
 * again, a few times, and the last try records the cancel wherever the
 * message is (a message found nowhere is in flight between two keys, e.g.
 * waiting for a concurrency slot: the worker that leases it next finds the
 * task final within a heartbeat and does not run it).
 * docs/PROTOCOL.md ("cancel.lua") is the specification. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define CANCEL_ROUNDS 4 /* looks for the message, then records the cancel anyway */

static int conn_fail(gtask__redis *r, gtask__conn *c, const char *what) {
  gtask__set_error("redis %s: %s: %s", r->conf->describe, what, c->errstr[0] ? c->errstr : "no reply");
  return GTASK_ECONN;
}

static int reply_fail(gtask__redis *r, const redisReply *rep, const char *what) {
  if (rep->type == REDIS_REPLY_ERROR) {
    gtask__set_error("redis %s: %s: %s", r->conf->describe, what, rep->str);
    return gtask__redis_reply_rc(rep->str);
  }
  gtask__set_error("redis %s: %s: unexpected reply", r->conf->describe, what);
  return GTASK_EPROTO;
}

/* The schedule member of task id (its id followed by its message) into
 * *member (a new string), or NULL when it has none. */
static int find_member(gtask__redis *r, gtask__conn *c, const char *queue, const char *id,
                       char **member, size_t *mlen) {
  *member = NULL;
  char kz[GTASK__KEY_MAX];
  gtask__redis_key(r, kz, sizeof(kz), queue, "sched", NULL);
  for (char cur[32] = "0";;) {
    redisReply *rep = gtask__redis_command(c, "ZSCAN %s %s MATCH %s* COUNT 1000", kz, cur, id);
    if (!rep) return conn_fail(r, c, "ZSCAN");
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 || rep->element[0]->type != REDIS_REPLY_STRING) {
      int rc = reply_fail(r, rep, "ZSCAN");
      freeReplyObject(rep);
      return rc;
    }
    const redisReply *kv = rep->element[1];
    if (kv->elements >= 2 && kv->element[0]->type == REDIS_REPLY_STRING) {
      *member = gtask__strndup(kv->element[0]->str, kv->element[0]->len);
      *mlen = kv->element[0]->len;
      freeReplyObject(rep);
      return *member ? 0 : GTASK_ENOMEM;
    }
    gtask__fmt(cur, sizeof(cur), "%s", rep->element[0]->str);
    freeReplyObject(rep);
    if (strcmp(cur, "0") == 0) return 0;
  }
}

/* The stream entry id of task id's message in stream ks into eid (""
 * when the stream holds none). */
static int find_entry(gtask__redis *r, gtask__conn *c, const char *ks, const char *id,
                      char eid[64]) {
  eid[0] = '\0';
  char start[70] = "-";
  size_t idlen = strlen(id);
  for (;;) {
    redisReply *rng = gtask__redis_command(c, "XRANGE %s %s + COUNT 1000", ks, start);
    if (!rng) return conn_fail(r, c, "XRANGE");
    if (rng->type != REDIS_REPLY_ARRAY) {
      int rc = reply_fail(r, rng, "XRANGE");
      freeReplyObject(rng);
      return rc;
    }
    for (size_t k = 0; k < rng->elements && !eid[0]; k++) {
      const redisReply *e = rng->element[k];
      if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[1]->type != REDIS_REPLY_ARRAY)
        continue;
      const redisReply *f = e->element[1];
      for (size_t j = 0; j + 1 < f->elements; j += 2)
        if (f->element[j]->len == 1 && f->element[j]->str[0] == 'i' && f->element[j + 1]->len == idlen &&
            memcmp(f->element[j + 1]->str, id, idlen) == 0)
          gtask__fmt(eid, 64, "%s", e->element[0]->str);
    }
    bool more = rng->elements == 1000 && !eid[0];
    if (more) gtask__fmt(start, sizeof(start), "(%s", rng->element[999]->element[0]->str);
    freeReplyObject(rng);
    if (!more) return 0;
  }
}

int gtask__redis_cancel(gtask__redis *r, const char *queue, const char *id, const char *rec,
                        size_t len, bool *running) {
  *running = false;
  gtask__conn *c = NULL;
  int rc = gtask__redis_use(r, queue, &c);
  if (rc) return rc;
  char keys[6][GTASK__KEY_MAX];
  gtask__redis_key(r, keys[0], GTASK__KEY_MAX, queue, "stream", NULL);
  gtask__redis_key(r, keys[1], GTASK__KEY_MAX, queue, "sched", NULL);
  gtask__redis_key(r, keys[2], GTASK__KEY_MAX, queue, "pending", NULL);
  gtask__redis_key(r, keys[3], GTASK__KEY_MAX, queue, "t", id);
  gtask__redis_key(r, keys[4], GTASK__KEY_MAX, queue, "n", id);
  gtask__redis_key(r, keys[5], GTASK__KEY_MAX, queue, "stats", NULL);
  gtask__argv a;
  gtask__argv_init(&a);
  for (int round = 0; rc == 0; round++) {
    char *member = NULL;
    size_t mlen = 0;
    char eid[64] = "";
    rc = find_member(r, c, queue, id, &member, &mlen);
    /* The stream of each priority level, highest first (a level stream that
     * was never written is empty to XRANGE). */
    static const char *const level[] = {"2", "1", NULL};
    for (int l = 0; rc == 0 && !member && !eid[0] && l < 3; l++) {
      gtask__redis_key(r, keys[0], GTASK__KEY_MAX, queue, "stream", level[l]);
      rc = find_entry(r, c, keys[0], id, eid);
    }
    if (rc) {
      gtask__free(member);
      break;
    }
    gtask__argv_reset(&a);
    for (int k = 0; k < 6; k++) gtask__argv_adds(&a, keys[k]);
    gtask__argv_adds(&a, GTASK__GROUP);
    gtask__argv_adds(&a, id);
    gtask__argv_add(&a, rec, len);
    gtask__argv_addi(&a, r->conf->expire_ms);
    gtask__argv_adds(&a, eid);
    gtask__argv_add(&a, member ? member : "", member ? mlen : 0);
    gtask__argv_adds(&a, round + 1 == CANCEL_ROUNDS ? "1" : "0");
    redisReply *rep = NULL;
    rc = gtask__redis_eval(r, c, GTASK__LUA_CANCEL, 6, &a, &rep); /* a points into member */
    gtask__free(member);
    if (rc) break;
    if (rep->type != REDIS_REPLY_INTEGER || rep->integer < -1 || rep->integer > 3) {
      rc = gtask__redis_proto_error(r, "cancel.lua", rep, "an integer -1..3");
    } else if (rep->integer == 0) {
      gtask__set_error("task %s is final already", id);
      rc = GTASK_ESTATE;
    } else if (rep->integer == -1) {
      gtask__set_error("no task %s in queue %s", id, queue);
      rc = GTASK_ENOTFOUND;
    } else if (rep->integer != 3) {
      *running = rep->integer == 2;
      freeReplyObject(rep);
      break;
    }
    freeReplyObject(rep);
  }
  gtask__argv_free(&a);
  gtask__redis_put(r, c);
  return rc;
}

/* One EXISTS n:<id> per task, pipelined per node (a worker's tasks may be of
 * queues in different Cluster slots). */
int gtask__redis_finals(gtask__redis *r, gtask_msg *const *msgs, size_t n, bool *out) {
  gtask__conn *c = NULL;
  int rc = 0;
  char key[GTASK__KEY_MAX];
  for (size_t i = 0; i < n && rc == 0;) {
    if ((rc = gtask__redis_use(r, msgs[i]->queue, &c)) != 0) break;
    size_t j = i;
    for (; j < n && gtask__redis_for_queue(r, msgs[j]->queue) == c->owner; j++) {
      size_t kl = gtask__redis_key(r, key, sizeof(key), msgs[j]->queue, "n", msgs[j]->id);
      gtask__conn_appendf(c, "EXISTS %b", key, kl);
    }
    for (size_t k = i; k < j; k++) {
      redisReply *p = NULL;
      if (gtask__conn_get_reply(c, &p) != REDIS_OK) {
        rc = conn_fail(r, c, "EXISTS");
        if (!c->err) c->err = REDIS_ERR_IO; /* replies may be left unread */
        break;
      }
      if (p->type == REDIS_REPLY_ERROR && rc == 0) rc = reply_fail(r, p, "EXISTS");
      out[k] = p->type == REDIS_REPLY_INTEGER && p->integer == 1;
      freeReplyObject(p);
    }
    i = j;
  }
  if (c) gtask__redis_put(r, c);
  return rc;
}
