/* jsonutil.h: small json-c helpers shared by the commands' reports. */
#ifndef P2V_JSONUTIL_H
#define P2V_JSONUTIL_H

#include <json.h>

/* A JSON string, or null for a missing value. */
static inline json_object *
json_string_or_null (const char *s)
{
  return s ? json_object_new_string (s) : NULL;
}

#endif /* P2V_JSONUTIL_H */
