/* test_stats_abi.c -- gtask_queue_stats grew a field after 0.1.0
 * (`cancelled`).  A program built against 0.1.0 passes a struct of six
 * fields to the function gtask_client_stats: the library must fill those and
 * write nothing past them.  A program built now gets the whole struct through
 * the macro of the same name.  On the in-process pair: no server needed. */
#include "test.h"

#include <string.h>

/* gtask_queue_stats as 0.1.0 laid it out, and what follows it in memory. */
typedef struct stats_0_1 {
  int64_t pending, active, scheduled, dead, succeeded, failed;
  int64_t after; /* the caller's next variable */
} stats_0_1;

static gtask_client *client_with_one_cancelled_and_one_pending(void) {
  gtask_broker *b = gtask_broker_memory_new();
  gtask_backend *be = gtask_backend_memory_new();
  ASSERT_NOT_NULL(b);
  ASSERT_NOT_NULL(be);
  gtask_client *cli = gtask_client_new(b, be);
  ASSERT_NOT_NULL(cli);
  gtask_broker_free(b);
  gtask_backend_free(be);
  gtask_send_conf *sc = gtask_send_conf_new("add");
  ASSERT_NOT_NULL(sc);
  gtask_value args[2] = {gtask_int64(1), gtask_int64(2)};
  char id[GTASK_ID_SIZE], id2[GTASK_ID_SIZE];
  ASSERT_EQ(gtask_client_send(cli, sc, args, 2, id), 0);
  ASSERT_EQ(gtask_client_send(cli, sc, args, 2, id2), 0);
  gtask_send_conf_free(sc);
  bool running = true;
  ASSERT_EQ(gtask_client_cancel(cli, id, &running), 0);
  ASSERT_FALSE(running);
  return cli;
}

TEST(a_program_built_against_0_1_gets_six_fields_and_nothing_past_them) {
  gtask_client *cli = client_with_one_cancelled_and_one_pending();
  stats_0_1 old;
  memset(&old, 0x5a, sizeof(old));
  const int64_t canary = old.after;
  /* The parentheses call the function, not the macro: what a binary linked
   * against 0.1.0 calls. */
  ASSERT_EQ((gtask_client_stats)(cli, NULL, (gtask_queue_stats *)(void *)&old), 0);
  ASSERT_EQ(old.pending, 1);
  ASSERT_EQ(old.dead, 0);
  ASSERT_EQ(old.failed, 0);
  ASSERT_EQ(old.after, canary);
  gtask_client_free(cli);
}

TEST(a_program_built_now_gets_the_cancelled_count) {
  gtask_client *cli = client_with_one_cancelled_and_one_pending();
  gtask_queue_stats st;
  memset(&st, 0x5a, sizeof(st));
  ASSERT_EQ(gtask_client_stats(cli, NULL, &st), 0);
  ASSERT_EQ(st.pending, 1);
  ASSERT_EQ(st.cancelled, 1);
  gtask_client_free(cli);
}

TEST(a_size_short_of_the_0_1_struct_is_refused_and_writes_nothing) {
  gtask_client *cli = client_with_one_cancelled_and_one_pending();
  stats_0_1 old;
  memset(&old, 0x5a, sizeof(old));
  stats_0_1 copy = old;
  ASSERT_EQ(gtask_client_stats_sized(cli, NULL, (gtask_queue_stats *)(void *)&old, 5 * sizeof(int64_t)),
            GTASK_EINVAL);
  ASSERT_EQ(memcmp(&old, &copy, sizeof(old)), 0);
  gtask_client_free(cli);
}
