/* Identity and room-name validation (PROTOCOL.md rules). */
#include <string.h>
#include "names.h"
#include "vcgate/plugin.h"
#include "tap.h"

int main(void) {
  const char *why = NULL;
  CHECK(vcg__room_name_check("team-7_A", 128, &why) == 0, "room of letters, digits, _ and - is valid");
  CHECK(vcg__room_name_check("", 128, &why) == VCG_EINVAL, "empty room is refused");
  CHECK(vcg__room_name_check("a.b", 128, &why) == VCG_EINVAL && strstr(why, "A-Z"),
        "room with '.' is refused (it would split a NATS subject)");
  CHECK(vcg__room_name_check("a*", 128, &why) == VCG_EINVAL, "room with '*' is refused");
  CHECK(vcg__room_name_check("a b", 128, &why) == VCG_EINVAL, "room with a space is refused");
  CHECK(vcg__room_name_check("abcd", 3, &why) == VCG_EINVAL && strstr(why, "long"),
        "room over max length is refused");
  CHECK(vcg__room_name_check("abc", 3, &why) == 0, "room at max length is valid");
  CHECK(vcg__user_name_check("alice.b+x@example.com", 256, &why) == 0,
        "identity may contain . @ +");
  CHECK(vcg__user_name_check("system-&^%$#@!", 256, &why) == VCG_EPERM,
        "the reserved system identity is refused as forbidden");
  CHECK(vcg__user_name_check("bob/evil", 256, &why) == VCG_EINVAL, "identity with '/' is refused");
  CHECK(vcg__user_name_check("", 256, &why) == VCG_EINVAL, "empty identity is refused");
  CHECK(vcg__user_name_check("\xc3\xa9", 256, &why) == VCG_EINVAL, "non-ASCII identity is refused");
  return TAP_DONE();
}
