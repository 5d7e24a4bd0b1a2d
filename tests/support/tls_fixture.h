/* tls_fixture.h -- test certificates, and a small TLS client for redis.
 *
 * For the TLS tests of issue 16 (rediss://, mutual TLS).  Two parts:
 *
 * 1. gt_certs_make() makes, with the `openssl` command, a CA and the
 *    certificates a test needs, good and bad, in a temp dir; once per test
 *    process (every later call returns the same set).  All keys are EC P-256,
 *    which openssl makes in milliseconds; the whole set takes about 0.2 s.
 *
 *        const char *why = gt_certs_missing_tool();
 *        if (why != NULL)
 *          SKIP("%s", why);
 *        const gt_certs *certs = gt_certs_make();
 *        ASSERT_NOT_NULL(certs);
 *        gt_redis *r = gt_redis_start_tls(certs, certs->server_cert,
 *                                         certs->server_key, "yes", NULL);
 *        // rediss:// client: CA certs->ca, client cert certs->client_cert
 *
 *    A TLS redis-server is a gt_redis: see gt_redis_start_tls() in
 *    redis_fixture.h.
 *
 * 2. gt_tls_connect() / gt_tls_command(): a blocking TLS client on OpenSSL that
 *    speaks RESP through hiredis's reply reader (hiredis 0.14 has no TLS).  The
 *    fixture uses it to see that a TLS server is up; tests can use it to check
 *    what a server accepts, independently of the library under test:
 *
 *        gt_tls_opts o = {.ca = certs->ca, .cert = certs->client_cert,
 *                         .key = certs->client_key};
 *        char err[256];
 *        gt_tls *t = gt_tls_connect(gt_redis_tls_port(r), &o, err, sizeof(err));
 *        redisReply *rep = gt_tls_command(t, "PING");   // NULL: gt_tls_errstr(t)
 *
 *    With TLS 1.3 the server checks the client's certificate after the client
 *    has finished its side of the handshake: a server that refuses the client
 *    (no certificate, unknown CA) lets gt_tls_connect() succeed and fails the
 *    first command, with the server's alert ("tlsv13 alert certificate
 *    required") or, when the server has already closed the connection, "write:
 *    Connection reset by peer".
 *    A client that refuses the server (unknown CA, expired, wrong name) fails in
 *    gt_tls_connect(), with the verification error in err ("certificate has
 *    expired").
 *
 * Not thread-safe: make certificates and connections from one thread (a
 * gt_tls is used by one thread at a time; the certificate set is made once).
 */
#ifndef GTASK_TEST_TLS_FIXTURE_H
#define GTASK_TEST_TLS_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

/* The files of a certificate set: absolute paths to PEM files, valid until the
 * test process exits (the directory is removed then).  "Good" certificates are
 * valid from the time they were made for ten years.  Every server certificate
 * has the extended key usages serverAuth and clientAuth (redis presents its
 * server certificate when it connects out, e.g. a TLS replica). */
typedef struct gt_certs {
  const char *dir;               /* the directory holding all the files */
  const char *ca;                /* CA certificate "gtask test CA": trust this */
  const char *server_cert;       /* CN=localhost, SAN IP:127.0.0.1 + DNS:localhost, by ca */
  const char *server_key;        /* its key */
  const char *client_cert;       /* CN=gtask-test-client, clientAuth, by ca */
  const char *client_key;        /* its key */
  const char *other_ca;          /* a second CA, "gtask other CA", that nothing trusts */
  const char *other_server_cert; /* like server_cert, but signed by other_ca */
  const char *other_server_key;  /* its key */
  const char *other_client_cert; /* like client_cert, but signed by other_ca */
  const char *other_client_key;  /* its key */
  const char *expired_cert;      /* like server_cert, by ca, but valid only from
                                    2020-01-01 to 2020-01-02 (UTC) */
  const char *expired_key;       /* its key */
  const char *wrong_name_cert;   /* by ca, valid, but CN and SAN are DNS:wrong.example
                                    only: fails the check for 127.0.0.1/localhost */
  const char *wrong_name_key;    /* its key */
} gt_certs;

/* NULL if the `openssl` command can be found (PATH, /usr/bin...), else a
 * sentence saying it is missing, fit for SKIP("%s", why). */
const char *gt_certs_missing_tool(void);

/* Makes the certificate set on the first call and returns it (the same set on
 * every later call in the process).  The directory is made in the test's temp
 * dir ($GTASK_TEST_TMPDIR, else $TMPDIR or /tmp) and removed at exit by the
 * process that made it.  Returns NULL after printing the reason (the failing
 * openssl command and its output) on stderr; it then tries again on the next
 * call.  Do not free the result. */
const gt_certs *gt_certs_make(void);

/* ---------------------------------------------------------------- TLS client */

typedef struct gt_tls gt_tls;

/* Options of gt_tls_connect(); zero fields mean the defaults. */
typedef struct gt_tls_opts {
  const char *ca;     /* verify the server's certificate against this CA file;
                         NULL: no verification at all (any certificate, any name) */
  const char *cert;   /* client certificate to present, or NULL for none */
  const char *key;    /* its private key; required with cert */
  const char *host;   /* with ca: the name the server certificate must match, an
                         IP address or a DNS name (sent as SNI); default "127.0.0.1" */
  int64_t timeout_ms; /* bound on the connect, the handshake and each command
                         (not scaled); default gt_scaled_ms(2000) */
} gt_tls_opts;

/* Connects to 127.0.0.1:port and completes the TLS handshake.  Returns a new
 * connection (free with gt_tls_close()), or NULL with the reason in err
 * (refused, timed out, or the TLS error, e.g. "certificate verify failed:
 * certificate has expired"); err may be NULL. */
gt_tls *gt_tls_connect(int port, const gt_tls_opts *o, char *err, size_t errsize);

/* Sends a command, formatted as by hiredis's redisCommand() ("SET %s %b"), and
 * reads one reply.  Returns the reply (free with freeReplyObject(); an error
 * reply is a reply, of type REDIS_REPLY_ERROR), or NULL on an I/O, TLS or
 * protocol error: then gt_tls_errstr() says which, and the connection is
 * unusable. */
redisReply *gt_tls_command(gt_tls *t, const char *fmt, ...);

/* The last error of t ("" if none); valid until the next call on t. */
const char *gt_tls_errstr(const gt_tls *t);

/* Closes the connection (sends close_notify) and frees t.  Accepts NULL. */
void gt_tls_close(gt_tls *t);

/* Connects, sends PING and checks the answer is PONG.  0, or -1 with the reason
 * in err (which may be NULL). */
int gt_tls_ping(int port, const gt_tls_opts *o, char *err, size_t errsize);

#endif /* GTASK_TEST_TLS_FIXTURE_H */
