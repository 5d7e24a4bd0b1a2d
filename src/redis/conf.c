/* conf.c -- gtask_redis_conf: where a Redis broker or backend connects, and
 * how (g_task's NewRedisConf and its setters).
 *
 * Accepted addresses (gtask_redis_conf_new):
 *   host:port                          g_task's form; "host" alone means port 6379
 *   [v6addr]:port, [v6addr]            IPv6 literals in brackets
 *   redis://[[user]:password@]host[:port][/db]
 *                                      user and password are percent-decoded;
 *                                      "redis://secret@h" means password "secret"
 *                                      (as redis-cli reads it: a user name
 *                                      without a password cannot AUTH anyway)
 *   rediss://...[?cacert=F&capath=D&cert=F&key=F&sni=NAME&insecure=1]
 *                                      TLS; the same authority as redis://,
 *                                      parameters percent-decoded
 *   redis-cluster://[[user]:password@]h1[:p1],h2[:p2],...[/0]
 *   rediss-cluster://...[?TLS parameters as rediss://]
 *                                      Redis Cluster: the nodes are seeds for
 *                                      the slot map (db 0 only)
 *   unix:/path/to/sock[?db=N]          unix:///path[?db=N] too
 * The db argument fills in a db the URL does not name; a different one from
 * the URL's is GTASK_EINVAL (issue 21: it used to win silently).
 * Everything else, including trailing characters, is GTASK_EINVAL with the
 * reason in gtask_last_error().  The URL is quoted in that message with any
 * user:password part replaced by "***", and describe never shows it either.
 */
#include "conf.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_URL "127.0.0.1:6379"
#define DEFAULT_PORT 6379
#define DEFAULT_POOL_SIZE 16
#define DEFAULT_EXPIRE_MS 86400000 /* 24 h */
#define DEFAULT_TIMEOUT_MS 2000
#define DEFAULT_PREFIX "gtask"
#define MAX_DB 100000
#define MAX_HOST 255      /* longer than any DNS name */
#define MAX_UNIX_PATH 107 /* sizeof(sockaddr_un.sun_path) - 1 on Linux */

/* Sets the thread's error to `invalid redis url "<url>": <reason>`, with the
 * URL's user:password part hidden, and returns GTASK_EINVAL. */
static int bad_url(const char *url, const char *fmt, ...) GTASK__PRINTF(2, 3);
static int bad_url(const char *url, const char *fmt, ...) {
  char reason[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  /* A query that holds a password is not shown at all. */
  const char *q = strchr(url, '?');
  size_t ulen = strlen(url);
  int shown = q != NULL && strstr(q, "password") != NULL ? (int)(q - url) : 120;
  if (shown > 120)
    shown = 120;
  if ((size_t)shown > ulen)
    shown = (int)ulen;
  const char *at = memchr(url, '@', (size_t)shown) ? strrchr(url, '@') : NULL;
  if (at != NULL && at - url >= shown)
    at = NULL;
  if (at == NULL) {
    gtask__set_error("invalid redis url \"%.*s%s\": %s", shown, url,
                     (size_t)shown < ulen && q && url + shown == q ? "?..." : "", reason);
  } else {
    const char *scheme = strstr(url, "://");
    int keep = scheme != NULL && scheme < at ? (int)(scheme + 3 - url) : 0;
    if (keep > 20)
      keep = 0;
    gtask__set_error("invalid redis url \"%.*s***%.*s\": %s", keep, url,
                     (int)(shown - (at - url)), at, reason);
  }
  return GTASK_EINVAL;
}

/* Parses s[0..len) as a decimal number in [0, max]: digits only (no sign, no
 * spaces), at least one. */
static bool parse_uint(const char *s, size_t len, long max, long *out) {
  if (len == 0)
    return false;
  long x = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    x = x * 10 + (s[i] - '0');
    if (x > max)
      return false; /* also stops before any overflow */
  }
  *out = x;
  return true;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..len) into a new string *out (NULL when len is 0).
 * 0, GTASK_ENOMEM, or GTASK_EINVAL for a bad escape or an escaped NUL. */
static int pct_decode(const char *url, const char *what, const char *s, size_t len,
                      char **out) {
  *out = NULL;
  if (len == 0)
    return 0;
  char *d = gtask__malloc(len + 1);
  if (d == NULL)
    return GTASK_ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] != '%') {
      d[n++] = s[i];
      continue;
    }
    int hi = i + 2 < len ? hex_digit(s[i + 1]) : -1;
    int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
    if (lo < 0 || (hi == 0 && lo == 0)) {
      gtask__free(d);
      return bad_url(url, "bad percent escape in %s", what);
    }
    d[n++] = (char)(hi * 16 + lo);
    i += 2;
  }
  d[n] = '\0';
  *out = d;
  return 0;
}

static bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '.' || c == '-' || c == '_';
}

/* Characters of a bracketed IPv6 literal, zone id ("%eth0") included. */
static bool ipv6_char(char c) { return host_char(c) || c == ':' || c == '%'; }

/* Parses "host", "host:port", "[v6]" or "[v6]:port" from s[0..len) into c. */
static int parse_hostport(const char *url, const char *s, size_t len, gtask_redis_conf *c) {
  const char *host, *port = NULL;
  size_t hlen, plen = 0;
  bool has_port = false;
  if (len > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', len);
    if (close == NULL)
      return bad_url(url, "missing ']' after IPv6 address");
    host = s + 1;
    hlen = (size_t)(close - host);
    if (hlen == 0)
      return bad_url(url, "empty host");
    for (size_t i = 0; i < hlen; i++)
      if (!ipv6_char(host[i]))
        return bad_url(url, "invalid character in IPv6 address");
    if (memchr(host, ':', hlen) == NULL)
      return bad_url(url, "brackets around something that is not an IPv6 address");
    size_t rest = len - (size_t)(close + 1 - s);
    if (rest > 0) {
      if (close[1] != ':')
        return bad_url(url, "unexpected characters after ']'");
      has_port = true;
      port = close + 2;
      plen = rest - 1;
    }
  } else {
    const char *colon = memchr(s, ':', len);
    host = s;
    hlen = colon != NULL ? (size_t)(colon - s) : len;
    if (colon != NULL) {
      has_port = true;
      port = colon + 1;
      plen = len - hlen - 1;
      if (memchr(port, ':', plen) != NULL)
        return bad_url(url, "an IPv6 address must be written in brackets, as [::1]:6379");
    }
    if (hlen == 0)
      return bad_url(url, "empty host");
    for (size_t i = 0; i < hlen; i++)
      if (!host_char(host[i]))
        return bad_url(url, "invalid character '%c' in host", host[i]);
  }
  if (hlen > MAX_HOST)
    return bad_url(url, "host name longer than %d bytes", MAX_HOST);
  long p = DEFAULT_PORT;
  if (has_port && !parse_uint(port, plen, 65535, &p))
    return bad_url(url, "invalid port \"%.*s\"", (int)(plen < 20 ? plen : 20), port);
  if (p == 0)
    return bad_url(url, "port 0");
  c->port = (int)p;
  c->host = gtask__strndup(host, hlen);
  return c->host != NULL ? 0 : GTASK_ENOMEM;
}

/* "[[user]:password@]" at the start of the authority *s (alen bytes): decodes
 * it into c and advances *s and *alen past it.  The user information ends at
 * the last '@' of the authority, so that an unescaped '@' in a password still
 * works; "secret@" alone is a password (as redis-cli reads it). */
static int parse_userinfo(const char *url, const char **sp, size_t *alenp, gtask_redis_conf *c) {
  const char *s = *sp, *at = NULL;
  for (size_t i = 0; i < *alenp; i++)
    if (s[i] == '@')
      at = s + i;
  if (at == NULL)
    return 0;
  size_t ulen = (size_t)(at - s);
  const char *colon = memchr(s, ':', ulen);
  int rc;
  if (colon != NULL) {
    if ((rc = pct_decode(url, "user name", s, (size_t)(colon - s), &c->user)) != 0 ||
        (rc = pct_decode(url, "password", colon + 1, ulen - (size_t)(colon - s) - 1,
                         &c->password)) != 0)
      return rc;
  } else if ((rc = pct_decode(url, "password", s, ulen, &c->password)) != 0) {
    return rc;
  }
  *alenp -= ulen + 1;
  *sp = at + 1;
  return 0;
}

static int parse_redis_authority(const char *url, const char *s, gtask_redis_conf *c);

/* The query of a URL: for TLS (rediss://, rediss-sentinel://) cacert,
 * capath, cert, key, sni (file names and the server name, percent-decoded)
 * and insecure (1, true or yes); for sentinels sentinel_user and
 * sentinel_password. */
static int parse_query(const char *url, const char *q, gtask_redis_conf *c, bool tls,
                       bool sentinel) {
  while (*q) {
    const char *amp = strchr(q, '&');
    size_t len = amp ? (size_t)(amp - q) : strlen(q);
    const char *eq = memchr(q, '=', len);
    if (!eq)
      return bad_url(url, "parameter \"%.*s\" has no value", (int)(len > 40 ? 40 : len), q);
    size_t klen = (size_t)(eq - q), vlen = len - klen - 1;
    static const struct {
      const char *name;
      size_t off;
      bool sentinel; /* a sentinel parameter, else a TLS one */
    } params[] = {{"cacert", offsetof(gtask_redis_conf, tls_ca), false},
                  {"capath", offsetof(gtask_redis_conf, tls_capath), false},
                  {"cert", offsetof(gtask_redis_conf, tls_cert), false},
                  {"key", offsetof(gtask_redis_conf, tls_key), false},
                  {"sni", offsetof(gtask_redis_conf, tls_sni), false},
                  {"sentinel_user", offsetof(gtask_redis_conf, sentinel_user), true},
                  {"sentinel_password", offsetof(gtask_redis_conf, sentinel_password), true}};
    bool known = false;
    for (size_t k = 0; k < sizeof(params) / sizeof(params[0]); k++) {
      if (strlen(params[k].name) != klen || strncmp(q, params[k].name, klen) != 0)
        continue;
      if (params[k].sentinel ? !sentinel : !tls)
        return bad_url(url, "parameter %s needs %s", params[k].name,
                       params[k].sentinel ? "redis-sentinel://"
                                          : "rediss://, rediss-sentinel:// or rediss-cluster://");
      char **field = (char **)((char *)c + params[k].off);
      if (vlen == 0)
        return bad_url(url, "parameter %s is empty", params[k].name);
      gtask__free(*field);
      *field = NULL;
      int rc = pct_decode(url, params[k].name, eq + 1, vlen, field);
      if (rc != 0)
        return rc;
      known = true;
    }
    if (!known && klen == 8 && strncmp(q, "insecure", 8) == 0) {
      if (!tls)
        return bad_url(url, "parameter insecure needs rediss://, rediss-sentinel:// or "
                            "rediss-cluster://");
      known = true;
      if (vlen == 1 && eq[1] == '1')
        c->tls_insecure = true;
      else if ((vlen == 4 && strncasecmp(eq + 1, "true", 4) == 0) ||
               (vlen == 3 && strncasecmp(eq + 1, "yes", 3) == 0))
        c->tls_insecure = true;
      else if (!(vlen == 1 && eq[1] == '0'))
        return bad_url(url, "insecure must be 1 or 0");
    }
    if (!known)
      return bad_url(url, "unknown parameter \"%.*s\" (TLS: cacert, capath, cert, key, sni, "
                     "insecure; sentinel: sentinel_user, sentinel_password)",
                     (int)(klen > 40 ? 40 : klen), q);
    q += len + (amp ? 1 : 0);
  }
  if ((c->tls_cert == NULL) != (c->tls_key == NULL))
    return bad_url(url, "cert and key go together (mutual TLS needs both)");
  return 0;
}

/* "redis://[[user]:password@]host[:port][/db]" after the scheme (s); for
 * rediss:// (tls) also "?cacert=...&..." (parse_tls_query). */
static int parse_redis_url(const char *url, const char *s, gtask_redis_conf *c, bool tls) {
  const char *query = strchr(s, '?');
  char *head = NULL;
  if (query != NULL) {
    if (!tls)
      return bad_url(url, "redis:// takes no parameters (TLS ones need rediss://)");
    head = gtask__strndup(s, (size_t)(query - s));
    if (head == NULL)
      return GTASK_ENOMEM;
    s = head;
  }
  int rc = parse_redis_authority(url, s, c);
  gtask__free(head);
  if (rc == 0 && query != NULL)
    rc = parse_query(url, query + 1, c, true, false);
  c->tls = tls;
  return rc;
}

static int parse_redis_authority(const char *url, const char *s, gtask_redis_conf *c) {
  const char *slash = strchr(s, '/');
  size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);

  int urc = parse_userinfo(url, &s, &alen, c);
  if (urc != 0)
    return urc;
  int rc = parse_hostport(url, s, alen, c);
  if (rc != 0)
    return rc;
  if (slash != NULL && slash[1] != '\0') {
    long db;
    if (!parse_uint(slash + 1, strlen(slash + 1), MAX_DB, &db))
      return bad_url(url, "invalid db \"%.20s\" (expected 0..%d)", slash + 1, MAX_DB);
    c->db = (int)db;
  }
  return 0;
}

#define DEFAULT_SENTINEL_PORT 26379
#define MAX_NODES 16 /* sentinels, or cluster seed nodes */

/* "h1[:p1],h2[:p2],..." (len bytes at s): the hosts and ports, default_port
 * where none is given, into new arrays *hosts and *ports (*n of them, freed
 * with the conf).  what names the list in messages ("sentinels"). */
static int parse_node_list(const char *url, const char *s, size_t len, const char *what,
                           int default_port, char ***hosts, int **ports, int *n) {
  size_t count = 1;
  for (size_t i = 0; i < len; i++) count += s[i] == ',';
  if (count > MAX_NODES)
    return bad_url(url, "more than %d %s", MAX_NODES, what);
  *hosts = gtask__calloc(count, sizeof(**hosts));
  *ports = gtask__calloc(count, sizeof(**ports));
  if (*hosts == NULL || *ports == NULL)
    return GTASK_ENOMEM;
  const char *p = s, *end = s + len;
  while (*n < (int)count) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    size_t one_len = comma ? (size_t)(comma - p) : (size_t)(end - p);
    gtask_redis_conf one = {0};
    int rc = parse_hostport(url, p, one_len, &one);
    if (rc != 0)
      return rc;
    const char *close = one_len > 0 && p[0] == '[' ? memchr(p, ']', one_len) : NULL;
    bool explicit_port = close ? close + 1 < p + one_len : memchr(p, ':', one_len) != NULL;
    (*hosts)[*n] = one.host;
    (*ports)[(*n)++] = explicit_port ? one.port : default_port;
    p += one_len + 1;
  }
  return 0;
}

static bool name_char(char c) { return host_char(c) || c == ':'; }

/* "[user:pass@]h1[:p1],h2[:p2],.../NAME[/db][?params]" after
 * "redis-sentinel://" (or "rediss-sentinel://": tls).  user:pass is for the
 * master; the sentinels' own AUTH comes from sentinel_user= and
 * sentinel_password=; TLS parameters (rediss-sentinel) apply to both. */
static int parse_sentinel_url(const char *url, const char *s, gtask_redis_conf *c, bool tls) {
  const char *query = strchr(s, '?');
  size_t total = query ? (size_t)(query - s) : strlen(s);
  const char *slash = memchr(s, '/', total);
  if (slash == NULL)
    return bad_url(url, "missing /MASTER-NAME after the sentinel addresses");
  size_t alen = (size_t)(slash - s);
  int urc = parse_userinfo(url, &s, &alen, c);
  if (urc != 0)
    return urc;
  int rc = parse_node_list(url, s, alen, "sentinels", DEFAULT_SENTINEL_PORT, &c->sentinel_host,
                           &c->sentinel_port, &c->nsentinels);
  if (rc != 0)
    return rc;
  const char *name = slash + 1;
  const char *rest_end = query ? query : name + strlen(name);
  const char *name_end = memchr(name, '/', (size_t)(rest_end - name));
  size_t nlen = (size_t)((name_end ? name_end : rest_end) - name);
  if (nlen == 0 || nlen > 128)
    return bad_url(url, "the master name must be 1..128 characters");
  for (size_t i = 0; i < nlen; i++)
    if (!name_char(name[i]))
      return bad_url(url, "invalid character '%c' in the master name", name[i]);
  if ((c->master_name = gtask__strndup(name, nlen)) == NULL)
    return GTASK_ENOMEM;
  if (name_end != NULL) {
    const char *db = name_end + 1;
    size_t dlen = (size_t)(rest_end - db);
    long v;
    if (dlen > 0 && !parse_uint(db, dlen, MAX_DB, &v))
      return bad_url(url, "invalid db \"%.*s\" (expected 0..%d)", (int)(dlen < 20 ? dlen : 20),
                     db, MAX_DB);
    if (dlen > 0)
      c->db = (int)v;
  }
  c->tls = tls;
  if (query != NULL)
    return parse_query(url, query + 1, c, tls, true);
  return 0;
}

/* "[user:pass@]h1[:p1],h2[:p2],...[/0][?params]" after "redis-cluster://"
 * (or "rediss-cluster://": tls, with the TLS parameters of rediss://).  The
 * nodes are seeds: any reachable one gives the slot map.  A cluster has db 0
 * only. */
static int parse_cluster_url(const char *url, const char *s, gtask_redis_conf *c, bool tls) {
  const char *query = strchr(s, '?');
  size_t total = query ? (size_t)(query - s) : strlen(s);
  const char *slash = memchr(s, '/', total);
  size_t alen = slash ? (size_t)(slash - s) : total;
  int rc = parse_userinfo(url, &s, &alen, c);
  if (rc != 0)
    return rc;
  if (alen == 0)
    return bad_url(url, "no cluster node given");
  rc = parse_node_list(url, s, alen, "cluster nodes", DEFAULT_PORT, &c->seed_host, &c->seed_port,
                       &c->nseeds);
  if (rc != 0)
    return rc;
  if (slash != NULL) {
    const char *db = slash + 1;
    size_t dlen = (size_t)((query ? query : db + strlen(db)) - db);
    if (dlen > 0 && !(dlen == 1 && db[0] == '0'))
      return bad_url(url, "a Redis Cluster has db 0 only (got \"%.*s\")",
                     (int)(dlen < 20 ? dlen : 20), db);
    c->db = 0;
  }
  if ((c->host = gtask__strdup(c->seed_host[0])) == NULL)
    return GTASK_ENOMEM;
  c->port = c->seed_port[0];
  c->cluster = true;
  c->tls = tls;
  if (query != NULL)
    return parse_query(url, query + 1, c, tls, false);
  return 0;
}

/* "/path[?db=N]" after "unix:" (or "unix://"). */
static int parse_unix_url(const char *url, const char *s, gtask_redis_conf *c) {
  if (strncmp(s, "//", 2) == 0) {
    s += 2;
    if (s[0] != '/')
      return bad_url(url, "unix:// must be followed by an absolute path (unix:///path)");
  }
  const char *q = strchr(s, '?');
  size_t plen = q != NULL ? (size_t)(q - s) : strlen(s);
  if (plen == 0)
    return bad_url(url, "empty socket path");
  if (plen > MAX_UNIX_PATH)
    return bad_url(url, "socket path longer than %d bytes", MAX_UNIX_PATH);
  if (q != NULL) {
    long db;
    if (strncmp(q + 1, "db=", 3) != 0)
      return bad_url(url, "unknown parameter (only ?db=N is accepted)");
    if (!parse_uint(q + 4, strlen(q + 4), MAX_DB, &db))
      return bad_url(url, "invalid db \"%.20s\" (expected 0..%d)", q + 4, MAX_DB);
    c->db = (int)db;
  }
  c->unix_path = gtask__strndup(s, plen);
  return c->unix_path != NULL ? 0 : GTASK_ENOMEM;
}

static void describe(gtask_redis_conf *c) {
  if (c->cluster) {
    gtask__fmt(c->describe, sizeof(c->describe), "%s://", c->tls ? "rediss-cluster" : "redis-cluster");
    for (int k = 0; k < c->nseeds; k++) {
      size_t off = strlen(c->describe);
      gtask__fmt(c->describe + off, sizeof(c->describe) - off,
                 strchr(c->seed_host[k], ':') ? "%s[%s]:%d" : "%s%s:%d", k ? "," : "",
                 c->seed_host[k], c->seed_port[k]);
    }
    return;
  }
  if (c->nsentinels > 0) {
    size_t off = 0;
    gtask__fmt(c->describe, sizeof(c->describe), "%s://", c->tls ? "rediss-sentinel" : "redis-sentinel");
    for (int k = 0; k < c->nsentinels; k++) {
      off = strlen(c->describe);
      gtask__fmt(c->describe + off, sizeof(c->describe) - off,
                 strchr(c->sentinel_host[k], ':') ? "%s[%s]:%d" : "%s%s:%d", k ? "," : "",
                 c->sentinel_host[k], c->sentinel_port[k]);
    }
    off = strlen(c->describe);
    gtask__fmt(c->describe + off, sizeof(c->describe) - off, "/%s/%d", c->master_name, c->db);
    return;
  }
  if (c->unix_path != NULL)
    /* "unix:/p" reads back as /p; a path starting "//" needs the "unix://"
     * form, or "unix://x" would read as the path "x". */
    gtask__fmt(c->describe, sizeof(c->describe), "unix:%s%s?db=%d",
               strncmp(c->unix_path, "//", 2) == 0 ? "//" : "", c->unix_path, c->db);
  else if (strchr(c->host, ':') != NULL)
    gtask__fmt(c->describe, sizeof(c->describe), "%s://[%s]:%d/%d", c->tls ? "rediss" : "redis",
               c->host, c->port, c->db);
  else
    gtask__fmt(c->describe, sizeof(c->describe), "%s://%s:%d/%d", c->tls ? "rediss" : "redis",
               c->host, c->port, c->db);
}

int gtask_redis_conf_new(gtask_redis_conf **out, const char *url, const char *password,
                         int db) {
  if (out == NULL) {
    gtask__set_error("gtask_redis_conf_new: out is NULL");
    return GTASK_EINVAL;
  }
  *out = NULL;
  if (db < -1 || db > MAX_DB) {
    gtask__set_error("invalid redis db %d (expected 0..%d, or -1 to keep the URL's)", db,
                     MAX_DB);
    return GTASK_EINVAL;
  }
  if (url == NULL)
    url = DEFAULT_URL;

  gtask_redis_conf *c = gtask__calloc(1, sizeof(*c));
  if (c == NULL)
    goto oom;
  c->pool_size = DEFAULT_POOL_SIZE;
  c->expire_ms = DEFAULT_EXPIRE_MS;
  c->timeout_ms = DEFAULT_TIMEOUT_MS;
  if ((c->prefix = gtask__strdup(DEFAULT_PREFIX)) == NULL)
    goto oom;

  /* -1 until the URL names a db, so that a db argument contradicting the
   * URL's can be told from one filling in a db the URL leaves out. */
  c->db = -1;
  int rc;
  const char *scheme_end = strstr(url, "://");
  if (url[0] == '\0') {
    rc = bad_url(url, "empty");
  } else if (strncasecmp(url, "unix:", 5) == 0) {
    rc = parse_unix_url(url, url + 5, c);
  } else if (strncasecmp(url, "redis://", 8) == 0) {
    rc = parse_redis_url(url, url + 8, c, false);
  } else if (strncasecmp(url, "rediss://", 9) == 0) {
    rc = parse_redis_url(url, url + 9, c, true);
  } else if (strncasecmp(url, "redis-sentinel://", 17) == 0) {
    rc = parse_sentinel_url(url, url + 17, c, false);
  } else if (strncasecmp(url, "rediss-sentinel://", 18) == 0) {
    rc = parse_sentinel_url(url, url + 18, c, true);
  } else if (strncasecmp(url, "redis-cluster://", 16) == 0) {
    rc = parse_cluster_url(url, url + 16, c, false);
  } else if (strncasecmp(url, "rediss-cluster://", 17) == 0) {
    rc = parse_cluster_url(url, url + 17, c, true);
  } else if (scheme_end != NULL) {
    rc = bad_url(url, "unknown scheme (expected redis://, rediss://, redis-sentinel://, "
                      "rediss-sentinel://, redis-cluster://, rediss-cluster:// or unix:)");
  } else {
    rc = parse_hostport(url, url, strlen(url), c);
  }
  /* The db argument fills in a db the URL does not name (g_task's
   * NewRedisConf("host:port", pw, db)); one that contradicts the URL's would
   * silently send tasks to another db than the URL says (issue 21). */
  if (rc == 0 && db >= 0 && c->db >= 0 && db != c->db)
    rc = bad_url(url, "it names db %d but the db argument is %d (pass -1 to use the URL's)",
                 c->db, db);
  if (rc == 0 && c->cluster && db > 0)
    rc = bad_url(url, "a Redis Cluster has db 0 only (the db argument is %d)", db);
  if (rc == GTASK_ENOMEM)
    goto oom;
  if (rc != 0) {
    gtask_redis_conf_free(c);
    return rc;
  }

  if (password != NULL && password[0] != '\0') {
    gtask__free(c->password);
    if ((c->password = gtask__strdup(password)) == NULL)
      goto oom;
  }
  if (db >= 0)
    c->db = db;
  else if (c->db < 0)
    c->db = 0;
  describe(c);
  *out = c;
  return 0;
oom:
  gtask_redis_conf_free(c);
  gtask__set_error("out of memory");
  return GTASK_ENOMEM;
}

/* Frees a secret after wiping it, so that it does not linger in freed memory. */
static void free_secret(char *s) {
  if (s != NULL) {
    explicit_bzero(s, strlen(s));
    gtask__free(s);
  }
}

void gtask_redis_conf_free(gtask_redis_conf *c) {
  if (c == NULL)
    return;
  gtask__free(c->host);
  gtask__free(c->unix_path);
  gtask__free(c->user);
  free_secret(c->password);
  gtask__free(c->prefix);
  gtask__free(c->tls_ca);
  gtask__free(c->tls_capath);
  gtask__free(c->tls_cert);
  gtask__free(c->tls_key);
  gtask__free(c->tls_sni);
  for (int k = 0; k < c->nsentinels; k++)
    gtask__free(c->sentinel_host[k]);
  gtask__free(c->sentinel_host);
  gtask__free(c->sentinel_port);
  for (int k = 0; k < c->nseeds; k++)
    gtask__free(c->seed_host[k]);
  gtask__free(c->seed_host);
  gtask__free(c->seed_port);
  gtask__free(c->master_name);
  gtask__free(c->sentinel_user);
  free_secret(c->sentinel_password);
  gtask__free(c);
}

/* Replaces *field with a copy of v (NULL or "": none). */
static int set_str(char **field, const char *v) {
  char *copy = NULL;
  if (v != NULL && v[0] != '\0' && (copy = gtask__strdup(v)) == NULL)
    return GTASK_ENOMEM;
  gtask__free(*field);
  *field = copy;
  return 0;
}

int gtask_redis_conf_set_tls(gtask_redis_conf *c, const char *ca_file, const char *cert_file,
                             const char *key_file) {
  if (c == NULL)
    return GTASK_EINVAL;
  if (c->unix_path != NULL) {
    gtask__set_error("TLS is for TCP connections, not unix sockets");
    return GTASK_EINVAL;
  }
  if ((cert_file == NULL || cert_file[0] == '\0') != (key_file == NULL || key_file[0] == '\0')) {
    gtask__set_error("a client certificate and its key go together (mutual TLS needs both)");
    return GTASK_EINVAL;
  }
  /* NULL keeps what the URL said. */
  if ((ca_file != NULL && set_str(&c->tls_ca, ca_file) != 0) ||
      (cert_file != NULL && set_str(&c->tls_cert, cert_file) != 0) ||
      (key_file != NULL && set_str(&c->tls_key, key_file) != 0))
    return GTASK_ENOMEM;
  c->tls = true;
  describe(c);
  return 0;
}

int gtask_redis_conf_set_tls_insecure(gtask_redis_conf *c, bool insecure) {
  if (c == NULL)
    return GTASK_EINVAL;
  c->tls_insecure = insecure;
  return 0;
}

int gtask_redis_conf_set_pool_size(gtask_redis_conf *c, int n) {
  if (c == NULL || n < 1) {
    gtask__set_error("redis pool size must be >= 1 (got %d)", n);
    return GTASK_EINVAL;
  }
  c->pool_size = n;
  return 0;
}

int gtask_redis_conf_set_expire_time(gtask_redis_conf *c, int64_t ms) {
  if (c == NULL || ms < 1000) {
    gtask__set_error("redis expire time must be >= 1000 ms (got %lld)", (long long)ms);
    return GTASK_EINVAL;
  }
  c->expire_ms = ms;
  return 0;
}

int gtask_redis_conf_set_wait_replicas(gtask_redis_conf *c, int n, int64_t timeout_ms) {
  if (c == NULL || n < 0 || n > 100 || timeout_ms < 1 || timeout_ms > 3600000) {
    gtask__set_error("gtask_redis_conf_set_wait_replicas: n 0..100 and a timeout of 1 ms..1 h");
    return GTASK_EINVAL;
  }
  c->wait_replicas = n;
  c->wait_replicas_ms = timeout_ms;
  return 0;
}

int gtask_redis_conf_set_timeout(gtask_redis_conf *c, int64_t ms) {
  if (c == NULL || ms < 1) {
    gtask__set_error("redis timeout must be >= 1 ms (got %lld)", (long long)ms);
    return GTASK_EINVAL;
  }
  c->timeout_ms = ms;
  return 0;
}

/* Same alphabet and length limit (1..128) as queue names. */
int gtask_redis_conf_set_prefix(gtask_redis_conf *c, const char *prefix) {
  if (c == NULL || !gtask__queue_valid(prefix)) {
    gtask__set_error("redis key prefix must be 1..128 of [A-Za-z0-9_.:-] (got \"%.40s\")",
                     prefix != NULL ? prefix : "(null)");
    return GTASK_EINVAL;
  }
  char *p = gtask__strdup(prefix);
  if (p == NULL) {
    gtask__set_error("out of memory");
    return GTASK_ENOMEM;
  }
  gtask__free(c->prefix);
  c->prefix = p;
  return 0;
}

/* Redis Cluster on a "host:port" or redis:// conf: the address becomes the
 * one seed node (a managed cluster's configuration endpoint, say). */
int gtask_redis_conf_set_cluster(gtask_redis_conf *c, bool on) {
  if (c == NULL)
    return GTASK_EINVAL;
  if (on && (c->unix_path != NULL || c->nsentinels > 0)) {
    gtask__set_error("Redis Cluster needs TCP node addresses (not a unix socket or sentinels)");
    return GTASK_EINVAL;
  }
  if (on && c->db != 0) {
    gtask__set_error("a Redis Cluster has db 0 only (the conf names db %d)", c->db);
    return GTASK_EINVAL;
  }
  if (on && c->nseeds == 0) {
    char **h = gtask__calloc(1, sizeof(*h));
    int *p = gtask__calloc(1, sizeof(*p));
    char *host = gtask__strdup(c->host);
    if (h == NULL || p == NULL || host == NULL) {
      gtask__free(h);
      gtask__free(p);
      gtask__free(host);
      return GTASK_ENOMEM;
    }
    h[0] = host;
    p[0] = c->port;
    c->seed_host = h;
    c->seed_port = p;
    c->nseeds = 1;
  }
  c->cluster = on;
  describe(c);
  return 0;
}

const char *gtask_redis_conf_describe(const gtask_redis_conf *c) {
  return c != NULL ? c->describe : "";
}

/* Copies a node list (n hosts and ports) into *dh, *dp, *dn (which the
 * struct copy made alias the source's: replaced here).  False if out of memory
 * (the copied part is kept for gtask_redis_conf_free). */
static bool copy_nodes(char *const *h, const int *p, int n, char ***dh, int **dp, int *dn) {
  *dn = 0;
  *dh = n ? gtask__calloc((size_t)n, sizeof(char *)) : NULL;
  *dp = n ? gtask__calloc((size_t)n, sizeof(int)) : NULL;
  if (n && (*dh == NULL || *dp == NULL))
    return false;
  for (int k = 0; k < n; k++) {
    if (((*dh)[k] = gtask__strdup(h[k])) == NULL)
      return false;
    (*dp)[(*dn)++] = p[k];
  }
  return true;
}

int gtask__redis_conf_copy(const gtask_redis_conf *c, gtask_redis_conf **out) {
  *out = NULL;
  if (c == NULL)
    return GTASK_EINVAL;
  gtask_redis_conf *d = gtask__calloc(1, sizeof(*d));
  if (d == NULL)
    return GTASK_ENOMEM;
  *d = *c;
  d->host = gtask__strdup(c->host);
  d->unix_path = gtask__strdup(c->unix_path);
  d->user = gtask__strdup(c->user);
  d->password = gtask__strdup(c->password);
  d->prefix = gtask__strdup(c->prefix);
  d->tls_ca = gtask__strdup(c->tls_ca);
  d->tls_capath = gtask__strdup(c->tls_capath);
  d->tls_cert = gtask__strdup(c->tls_cert);
  d->tls_key = gtask__strdup(c->tls_key);
  d->tls_sni = gtask__strdup(c->tls_sni);
  d->master_name = gtask__strdup(c->master_name);
  d->sentinel_user = gtask__strdup(c->sentinel_user);
  d->sentinel_password = gtask__strdup(c->sentinel_password);
  bool sentinels_ok = copy_nodes(c->sentinel_host, c->sentinel_port, c->nsentinels,
                                 &d->sentinel_host, &d->sentinel_port, &d->nsentinels);
  sentinels_ok &= copy_nodes(c->seed_host, c->seed_port, c->nseeds, &d->seed_host, &d->seed_port,
                             &d->nseeds);
  if ((c->host != NULL && d->host == NULL) || (c->unix_path != NULL && d->unix_path == NULL) ||
      (c->user != NULL && d->user == NULL) || (c->password != NULL && d->password == NULL) ||
      (c->prefix != NULL && d->prefix == NULL) || (c->tls_ca != NULL && d->tls_ca == NULL) ||
      (c->tls_capath != NULL && d->tls_capath == NULL) ||
      (c->tls_cert != NULL && d->tls_cert == NULL) || (c->tls_key != NULL && d->tls_key == NULL) ||
      (c->tls_sni != NULL && d->tls_sni == NULL) || !sentinels_ok ||
      (c->master_name != NULL && d->master_name == NULL) ||
      (c->sentinel_user != NULL && d->sentinel_user == NULL) ||
      (c->sentinel_password != NULL && d->sentinel_password == NULL)) {
    gtask_redis_conf_free(d);
    return GTASK_ENOMEM;
  }
  *out = d;
  return 0;
}

bool gtask__redis_conf_same_db(const gtask_redis_conf *a, const gtask_redis_conf *b) {
  if (a == NULL || b == NULL || a->db != b->db)
    return false;
  if (a->cluster || b->cluster) /* the same seed nodes */
    return a->cluster && b->cluster && strcmp(a->describe, b->describe) == 0;
  if (a->nsentinels > 0 || b->nsentinels > 0) /* the same sentinels, master and db */
    return a->nsentinels > 0 && b->nsentinels > 0 && strcmp(a->describe, b->describe) == 0;
  if (a->unix_path != NULL || b->unix_path != NULL)
    return a->unix_path != NULL && b->unix_path != NULL &&
           strcmp(a->unix_path, b->unix_path) == 0;
  return a->port == b->port && a->host != NULL && b->host != NULL &&
         strcasecmp(a->host, b->host) == 0;
}
