/* redis/claim.c -- sends that must not duplicate a task: claim.lua, for the
 * backend's claim() (claim only) and the colocated broker's push_unique()
 * (claim and queue in one script).
 *
 * A unique key held until its task is final is checked against the holder's
 * own keys, which claim.lua must be given by name: so the holders are read
 * first (one MGET of the keys) and the script compares them before it
 * writes.  If one changed meanwhile, the script changes nothing and returns
 * -1, and the whole is done again with fresh reads (a bounded number of
 * times: each retry means another send took or freed the key meanwhile).
 * docs/PROTOCOL.md ("claim.lua") is the specification. */
#include "internal.h"

#include <string.h>

/* How often a claim is read and tried again when a key's holder keeps
 * changing under it before giving up with GTASK_EREDIS. */
#define CLAIM_ROUNDS 16

static size_t claim_run_end(const gtask_claim *cs, size_t n, size_t i) {
  size_t j = i + 1;
  while (j < n && cs[j].msg->priority == cs[i].msg->priority &&
         strcmp(cs[j].msg->queue, cs[i].msg->queue) == 0)
    j++;
  return j;
}

/* Reads the holders of the until-done keys of cs[0..n) (one queue; claim k's
 * key named in keys[5k + 2]) into holders[k] ("" when free or when the claim
 * has no such key). */
static int read_holders(gtask__redis *sr, gtask__conn *c, const gtask_claim *cs, size_t n,
                        char (*keys)[GTASK__KEY_MAX], char (*holders)[GTASK_ID_SIZE]) {
  gtask__argv a;
  gtask__argv_init(&a);
  gtask__argv_adds(&a, "MGET");
  size_t nget = 0;
  for (size_t k = 0; k < n; k++) {
    holders[k][0] = '\0';
    if (cs[k].unique_key && cs[k].unique_ttl_ms == 0) {
      gtask__argv_adds(&a, keys[5 * k + 2]);
      nget++;
    }
  }
  int rc = 0;
  if (nget) {
    redisReply *rep;
    rc = gtask__redis_cmd(sr, c, &a, &rep);
    if (rc == 0) {
      if (rep->type != REDIS_REPLY_ARRAY || rep->elements != nget) {
        rc = gtask__redis_proto_error(sr, "MGET", rep, "an array of the keys' values");
      } else {
        size_t e = 0;
        for (size_t k = 0; k < n; k++) {
          if (!(cs[k].unique_key && cs[k].unique_ttl_ms == 0)) continue;
          const redisReply *v = rep->element[e++];
          /* A holder that is no task id: the key was written by something
           * else, and the script would never find it as read. */
          if (v->type == REDIS_REPLY_STRING && v->len == GTASK_ID_SIZE - 1) {
            memcpy(holders[k], v->str, GTASK_ID_SIZE - 1);
            holders[k][GTASK_ID_SIZE - 1] = '\0';
          } else if (v->type == REDIS_REPLY_STRING) {
            rc = gtask__redis_proto_error(sr, "MGET", rep, "task ids in the unique keys");
          }
        }
      }
      freeReplyObject(rep);
    }
  }
  gtask__argv_free(&a);
  return rc;
}

int gtask__redis_claim(gtask__redis *qr, gtask__redis *sr, bool queue, gtask_claim *cs, size_t n) {
  gtask__conn *c = NULL; /* the connection to the node of the run's queue */
  int rc = 0;
  /* Per claim: t, n, u, t of the holder, n of the holder; then stream,
   * sched, pending, and for a level above 0 the marker and workers. */
  char(*keys)[GTASK__KEY_MAX] = gtask__calloc(5 * n + 5, sizeof(*keys));
  char(*holders)[GTASK_ID_SIZE] = gtask__calloc(n, sizeof(*holders));
  gtask__argv a;
  gtask__argv_init(&a);
  if (!keys || !holders) rc = GTASK_ENOMEM;
  for (size_t i = 0; i < n && rc == 0;) {
    size_t j = claim_run_end(cs, n, i);
    const char *q = cs[i].msg->queue;
    if ((rc = gtask__redis_use(qr, q, &c)) != 0) break;
    char(*base)[GTASK__KEY_MAX] = &keys[5 * n];
    static const char *const level[] = {NULL, "1", "2"};
    int lv = queue && cs[i].msg->priority > 0 && cs[i].msg->priority <= GTASK_PRIORITY_MAX
                 ? cs[i].msg->priority
                 : 0;
    gtask__redis_key(qr, base[0], GTASK__KEY_MAX, q, "stream", level[lv]);
    gtask__redis_key(qr, base[3], GTASK__KEY_MAX, q, "prio", NULL);
    gtask__redis_key(qr, base[4], GTASK__KEY_MAX, q, "workers", NULL);
    gtask__redis_key(qr, base[1], GTASK__KEY_MAX, q, "sched", NULL);
    gtask__redis_key(sr, base[2], GTASK__KEY_MAX, q, "pending", NULL);
    for (size_t k = i; k < j; k++) {
      char(*kk)[GTASK__KEY_MAX] = &keys[5 * k];
      gtask__redis_key(sr, kk[0], GTASK__KEY_MAX, q, "t", cs[k].msg->id);
      gtask__redis_key(sr, kk[1], GTASK__KEY_MAX, q, "n", cs[k].msg->id);
      if (cs[k].unique_key) gtask__redis_key(sr, kk[2], GTASK__KEY_MAX, q, "u", cs[k].unique_key);
    }
    redisReply *rep = NULL;
    for (int round = 0;; round++) {
      if (round == CLAIM_ROUNDS) {
        gtask__set_error("claim.lua: the unique keys of queue %s kept changing (%d tries)", q,
                         CLAIM_ROUNDS);
        rc = GTASK_EREDIS;
        break;
      }
      rc = read_holders(sr, c, &cs[i], j - i, &keys[5 * i], &holders[i]);
      if (rc) break;
      gtask__argv_reset(&a);
      size_t nkeys = 3;
      for (int b = 0; b < 3; b++) gtask__argv_adds(&a, base[b]);
      for (size_t k = i; k < j; k++) {
        char(*kk)[GTASK__KEY_MAX] = &keys[5 * k];
        gtask__argv_adds(&a, kk[0]);
        gtask__argv_adds(&a, kk[1]);
        nkeys += 2;
        if (cs[k].unique_key) {
          gtask__argv_adds(&a, kk[2]);
          nkeys++;
          if (holders[k][0]) {
            gtask__redis_key(sr, kk[3], GTASK__KEY_MAX, q, "t", holders[k]);
            gtask__redis_key(sr, kk[4], GTASK__KEY_MAX, q, "n", holders[k]);
            gtask__argv_adds(&a, kk[3]);
            gtask__argv_adds(&a, kk[4]);
            nkeys += 2;
          }
        }
      }
      if (lv) {
        gtask__argv_adds(&a, base[3]);
        gtask__argv_adds(&a, base[4]);
        nkeys += 2;
      }
      gtask__argv_adds(&a, lv ? "2" : queue ? "1" : "0");
      gtask__argv_addi(&a, gtask__now_ms());
      gtask__argv_addi(&a, sr->conf->expire_ms);
      for (size_t k = i; k < j; k++) {
        gtask__argv_adds(&a, cs[k].msg->id);
        gtask__argv_add(&a, cs[k].msg->body ? cs[k].msg->body : "", cs[k].msg->len);
        gtask__argv_addi(&a, cs[k].msg->due_ms);
        if (!cs[k].unique_key)
          gtask__argv_adds(&a, "");
        else
          gtask__argv_addi(&a, cs[k].unique_ttl_ms);
        gtask__argv_adds(&a, holders[k]);
      }
      rc = gtask__redis_eval(qr, c, GTASK__LUA_CLAIM, nkeys, &a, &rep);
      if (rc) break;
      if (rep->type == REDIS_REPLY_INTEGER && rep->integer == -1) {
        freeReplyObject(rep); /* a holder changed: read again */
        rep = NULL;
        continue;
      }
      break;
    }
    if (rc == 0 && rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
        rep->element[0]->type == REDIS_REPLY_INTEGER && rep->element[0]->integer == 0) {
      rc = gtask__redis_levels_refused(qr, rep, q, lv);
      freeReplyObject(rep);
      break;
    }
    if (rc == 0) {
      if (rep->type != REDIS_REPLY_ARRAY || rep->elements != j - i) {
        rc = gtask__redis_proto_error(qr, "claim.lua", rep, "an array of one reply per claim");
      } else {
        for (size_t k = i; k < j && rc == 0; k++) {
          const redisReply *e = rep->element[k - i];
          cs[k].duplicate = false;
          cs[k].existing[0] = '\0';
          if (e->type == REDIS_REPLY_INTEGER && e->integer == 1) continue;
          if (e->type != REDIS_REPLY_STRING || e->len != GTASK_ID_SIZE - 1) {
            rc = gtask__redis_proto_error(qr, "claim.lua", rep, "1 or a task id per claim");
            break;
          }
          cs[k].duplicate = true;
          memcpy(cs[k].existing, e->str, GTASK_ID_SIZE - 1);
          cs[k].existing[GTASK_ID_SIZE - 1] = '\0';
        }
      }
      freeReplyObject(rep);
    }
    i = j;
  }
  gtask__argv_free(&a);
  gtask__free(keys);
  gtask__free(holders);
  if (c) gtask__redis_put(qr, c);
  return rc;
}
