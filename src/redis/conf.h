/* conf.h -- the definition of gtask_redis_conf, shared by the Redis broker and
 * backend (src/redis/), and the helpers they use to copy and compare it.
 * The public constructors and setters are declared in gtask.h. */
#ifndef GTASK_REDIS_CONF_H
#define GTASK_REDIS_CONF_H

#include "../internal.h"

/* Either a TCP endpoint (host, port) or a unix socket (unix_path), plus the
 * session settings.  Every string is owned by the conf. */
struct gtask_redis_conf {
  char *host;         /* TCP host name or address (IPv6 without brackets); NULL for unix */
  int port;           /* TCP port, 1..65535; 0 for unix */
  char *unix_path;    /* unix socket path, or NULL for TCP */
  char *user;         /* ACL user name for AUTH, or NULL */
  char *password;     /* password for AUTH, or NULL */
  int db;             /* SELECT db, 0..100000 */
  int pool_size;      /* connections kept open, >= 1 (default 16) */
  int64_t expire_ms;  /* lifetime of messages (broker) or results (backend) */
  int64_t timeout_ms; /* connect and command timeout */
  int wait_replicas;        /* a send, finish or requeue waits for this many replicas (WAIT) */
  int64_t wait_replicas_ms; /* at most this long */
  char *prefix;       /* key prefix (default "gtask") */
  bool tls;           /* TLS (rediss://, gtask_redis_conf_set_tls) */
  char *tls_ca;       /* CA certificates (PEM file), or NULL: the system store */
  char *tls_capath;   /* a directory of CA certificates (c_rehash), or NULL */
  char *tls_cert;     /* client certificate (PEM) for mutual TLS, or NULL */
  char *tls_key;      /* its private key, or NULL (required with tls_cert) */
  char *tls_sni;      /* the server name to send and to check, or NULL: host */
  bool tls_insecure;  /* no certificate or name check (logged as a warning) */
  /* Sentinel (redis-sentinel://): the master is found by asking these. */
  int nsentinels;          /* 0: host and port are the server itself */
  char **sentinel_host;    /* nsentinels host names or addresses */
  int *sentinel_port;      /* and their ports */
  char *master_name;       /* the name the sentinels monitor the master under */
  char *sentinel_user;     /* AUTH for the sentinels, or NULL */
  char *sentinel_password;
  /* Redis Cluster (redis-cluster://, gtask_redis_conf_set_cluster): the slot
   * map is read from these seed nodes (any reachable ones will do); host and
   * port are the first of them.  db is 0: a cluster has no other. */
  bool cluster;
  int nseeds;       /* with cluster: >= 1 */
  char **seed_host; /* nseeds host names or addresses */
  int *seed_port;   /* and their ports */
  char describe[300]; /* "redis://host:port/db" or "unix:/path?db=N"; no password */
};

/* Deep copy of c into a new *out (free with gtask_redis_conf_free).  0 or
 * GTASK_ENOMEM. */
int gtask__redis_conf_copy(const gtask_redis_conf *c, gtask_redis_conf **out);

/* True if a and b name the same endpoint (host and port, compared without
 * case, or unix socket path) and the same db.  Two spellings of one server
 * ("localhost" and "127.0.0.1") compare different. */
bool gtask__redis_conf_same_db(const gtask_redis_conf *a, const gtask_redis_conf *b);

#endif /* GTASK_REDIS_CONF_H */
