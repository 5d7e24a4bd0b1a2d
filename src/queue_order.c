/* queue_order.c -- the order in which a worker leases from its queues
 * (issue 18, weighted queues).
 *
 * A worker's queue list is either plain ("a,b,c": the list order is a strict
 * priority, as it always was) or weighted ("critical:6,default:3,low:1").
 * A weighted worker picks a new order for each lease by smooth weighted round
 * robin (nginx's): every queue's credit grows by its weight, the queue with the
 * most credit goes first and pays the sum of the weights.  Over any run of
 * leases each queue goes first in proportion to its weight -- exactly, every
 * sum-of-weights leases, and spread out rather than in bursts -- so a low
 * queue is never starved, and a deterministic order makes the shares testable.
 * The queues after the first follow by credit, so an empty first queue hands
 * the lease on in the same spirit.  Strict mode sorts the list by weight,
 * highest first, once: every lease then tries the queues in that order.
 *
 * The broker's lease takes the queues in the order given (the Redis broker
 * reads them in that order in one pass, on a cluster per node: see
 * redis/broker.c lease), so a lease stays one batch whatever the order. */
#include "worker.h"

#include <stdio.h>
#include <string.h>

/* The weight at the end of entry e ("name:N", N digits without a sign), as
 * 1..GTASK__QUEUE_WEIGHT_MAX, with e cut to the name; 0 if e has no weight
 * suffix; -1 if the suffix is a weight out of range. */
static int cut_weight(char *e) {
  char *colon = strrchr(e, ':');
  if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1)) return 0;
  if (strlen(colon + 1) > 4) return -1;
  int w = 0;
  for (const char *p = colon + 1; *p; p++) w = w * 10 + (*p - '0');
  if (w < 1 || w > GTASK__QUEUE_WEIGHT_MAX) return -1;
  *colon = '\0';
  return w;
}

int gtask__queue_list_parse(char *buf, const char **names, int *weights, size_t *n,
                            bool *weighted, char *err, size_t errlen) {
  size_t k = 0, with = 0;
  for (char *p = buf;;) {
    char *comma = strchr(p, ',');
    if (comma) *comma = '\0';
    char entry[160];
    snprintf(entry, sizeof(entry), "%s", p);
    int w = cut_weight(p);
    if (w < 0) {
      snprintf(err, errlen, "bad weight in \"%s\" (an integer from 1 to %d)", entry,
               GTASK__QUEUE_WEIGHT_MAX);
      return GTASK_EINVAL;
    }
    if (!gtask__queue_valid(p)) {
      snprintf(err, errlen, "invalid queue name \"%s\" (1..128 of A-Z a-z 0-9 _ . : -)", p);
      return GTASK_EINVAL;
    }
    for (size_t i = 0; i < k; i++)
      if (strcmp(names[i], p) == 0) {
        snprintf(err, errlen, "queue \"%s\" is listed twice", p);
        return GTASK_EINVAL;
      }
    with += w > 0;
    names[k] = p;
    weights[k++] = w > 0 ? w : 1;
    if (!comma) break;
    p = comma + 1;
  }
  if (with != 0 && with != k) {
    snprintf(err, errlen,
             "give every queue a weight (\"a:6,b:3,c:1\") or none (\"a,b,c\": strict order); "
             "a queue whose name ends in :DIGITS needs one (\"jobs:2:1\")");
    return GTASK_EINVAL;
  }
  *n = k;
  *weighted = with != 0;
  return 0;
}

void gtask__queue_order_strict(const char **names, int *weights, size_t n) {
  for (size_t i = 1; i < n; i++) { /* insertion sort: stable, and n is small */
    const char *name = names[i];
    int w = weights[i];
    size_t j = i;
    for (; j > 0 && weights[j - 1] < w; j--) {
      names[j] = names[j - 1];
      weights[j] = weights[j - 1];
    }
    names[j] = name;
    weights[j] = w;
  }
}

void gtask__queue_order_next(const char *const *queues, const int *weights, int64_t *credit,
                             size_t nq, const char *const *active, size_t nactive,
                             const char **order) {
  /* active[] points into queues[]: its index there finds weight and credit. */
  size_t idx[GTASK__QUEUES_MAX];
  int64_t total = 0;
  for (size_t a = 0; a < nactive; a++) {
    size_t q = 0;
    while (q < nq && queues[q] != active[a]) q++;
    idx[a] = q;
    credit[q] += weights[q];
    total += weights[q];
  }
  /* By credit, highest first; ties keep the list order. */
  for (size_t a = 0; a < nactive; a++) {
    size_t j = a;
    for (; j > 0 && credit[idx[j - 1]] < credit[idx[a]]; j--) {}
    size_t moving = idx[a];
    memmove(&idx[j + 1], &idx[j], (a - j) * sizeof(*idx));
    idx[j] = moving;
  }
  if (nactive) credit[idx[0]] -= total;
  for (size_t a = 0; a < nactive; a++) order[a] = queues[idx[a]];
}
