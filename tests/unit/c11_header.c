/* c11_header.c -- <gtask/gtask.h>, extend.h and contract.h in strict ISO
 * C11: compiled, never run, by the ctest tests header_c11 (the build's
 * compiler) and header_c11_clang (see tests/CMakeLists.txt) with -std=c11
 * -pedantic -Werror.
 *
 * The header promises C11 (README, "Build and install"), and the typed-handler
 * macros are where it could slip: counting a possibly empty list of types
 * without __VA_OPT__ (C23), and never leaving a variadic macro's "..." without
 * an argument.  So this file uses GTASK_HANDLER with every shape of list --
 * no inputs or outputs, inputs only, outputs only, both, and the maximum of
 * 8 inputs and 4 outputs -- then GTASK_REG and GTASK_SEND.  Its name does not
 * start with test_, so it does not become a test executable. */
#include <gtask/gtask.h>
/* The extension headers too (issue 21): installed, so held to the same C11. */
#include <gtask/contract.h>
#include <gtask/extend.h>

static int nothing(void) { return 0; }
GTASK_HANDLER(nothing, (), ())

static int take(int32_t status) { return status == 0 ? 0 : 1; }
GTASK_HANDLER(take, (int32_t), ())

static int give(int64_t *out) {
  *out = 42;
  return 0;
}
GTASK_HANDLER(give, (), (int64_t))

static int greet(const char *name, char **out) {
  (void)name;
  *out = NULL;
  return 0;
}
GTASK_HANDLER(greet, (const char *), (char *))

static int add(int64_t a, int64_t b, int64_t *sum) {
  *sum = a + b;
  return 0;
}
GTASK_HANDLER(add, (int64_t, int64_t), (int64_t))

static int widest(bool a, int8_t b, int16_t c, int32_t d, int64_t e, uint8_t f, uint16_t g,
                  const char *h, uint32_t *o1, uint64_t *o2, float *o3, double *o4) {
  *o1 = (uint32_t)(a + b + c + d + e + f + g + (h != NULL));
  *o2 = 0;
  *o3 = 0;
  *o4 = 0;
  return 0;
}
GTASK_HANDLER(widest, (bool, int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, const char *),
              (uint32_t, uint64_t, float, double))

int c11_header_register(gtask_server *svr);
int c11_header_register(gtask_server *svr) {
  int rc = GTASK_REG(svr, nothing);
  if (rc == 0) rc = GTASK_REG(svr, take);
  if (rc == 0) rc = GTASK_REG(svr, give);
  if (rc == 0) rc = GTASK_REG(svr, greet);
  if (rc == 0) rc = GTASK_REG(svr, add);
  if (rc == 0) rc = GTASK_REG(svr, widest);
  return rc;
}

int c11_header_send(gtask_client *cli, const gtask_send_conf *conf);
int c11_header_send(gtask_client *cli, const gtask_send_conf *conf) {
  char id[GTASK_ID_SIZE];
  int rc = GTASK_SEND(cli, conf, id, gtask_int64(1), gtask_int64(2));
  if (rc == 0) rc = GTASK_SEND(cli, conf, id, gtask_str("one value"));
  /* No values: GTASK_SEND needs at least one (an empty compound literal is
   * not C11); the function itself takes none. */
  if (rc == 0) rc = gtask_client_send(cli, conf, NULL, 0, id);
  return rc;
}
