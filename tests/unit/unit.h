/* unit.h: a tiny test harness for the C unit tests.  Each CHECK counts;
 * the program ends with the plain "N passed, N failed" line CI reads. */
#ifndef P2V_UNIT_H
#define P2V_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static int unit_passed, unit_failed;

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (cond)                                                           \
      unit_passed++;                                                    \
    else {                                                              \
      unit_failed++;                                                    \
      fprintf (stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
    }                                                                   \
  } while (0)

/* The last p2v_error() message contains the expected words. */
#define CHECK_ERROR(expr, words)                                        \
  do {                                                                  \
    int unit_failed_call_ = (expr);                                     \
    CHECK (unit_failed_call_);                                          \
    if (!strstr (p2v_last_error (), (words))) {                         \
      unit_failed++;                                                    \
      fprintf (stderr, "FAIL %s:%d: error '%s' lacks '%s'\n",           \
               __FILE__, __LINE__, p2v_last_error (), (words));         \
    }                                                                   \
  } while (0)

static inline int
unit_finish (const char *name)
{
  printf ("%s: %d passed, %d failed\n", name, unit_passed, unit_failed);
  return unit_failed ? 1 : 0;
}

#endif /* P2V_UNIT_H */
