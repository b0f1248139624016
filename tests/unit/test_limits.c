/* Address limits: CIDR matching and the per-address count. */
#include <arpa/inet.h>
#include <string.h>
#include "connlimit.h"
#include "vcgate/plugin.h"
#include "tap.h"

static struct sockaddr_storage addr(const char *s) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  if (strchr(s, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    inet_pton(AF_INET6, s, &a->sin6_addr);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    inet_pton(AF_INET, s, &a->sin_addr);
  }
  return ss;
}
#define SA(x) ((struct sockaddr *)&(x))

int main(void) {
  vcg__cidr_t c;
  struct sockaddr_storage a1 = addr("10.1.2.3"), a2 = addr("11.0.0.1"), a6 = addr("::1"),
                          mapped = addr("::ffff:10.9.9.9"), lo = addr("127.0.0.5");
  CHECK(vcg__cidr_parse("10.0.0.0/8", &c) == 0 && vcg__cidr_match(&c, SA(a1)) && !vcg__cidr_match(&c, SA(a2)),
        "IPv4 CIDR matches inside, not outside");
  CHECK(vcg__cidr_match(&c, SA(mapped)), "an IPv4-mapped IPv6 address matches its IPv4 CIDR");
  CHECK(vcg__cidr_parse("::1", &c) == 0 && vcg__cidr_match(&c, SA(a6)) && !vcg__cidr_match(&c, SA(a1)),
        "a bare IPv6 address is a /128");
  CHECK(vcg__cidr_parse("10.0.0.0/33", &c) == VCG_EINVAL, "prefix longer than the address is refused");
  CHECK(vcg__cidr_parse("banana", &c) == VCG_EINVAL, "non-addresses are refused");
  CHECK(vcg__cidr_parse("10.0.0.0/", &c) == VCG_EINVAL, "an empty prefix is refused");

  vcg__limits_t l;
  char err[128];
  char *trusted[] = { "127.0.0.0/8", NULL };
  CHECK(vcg__limits_init(&l, 5, 2, trusted, err, sizeof err) == 0, "limits initialise");
  int k1, k2, k3, kl;
  CHECK(vcg__limits_acquire(&l, SA(a1), &k1) == 0 && vcg__limits_acquire(&l, SA(a1), &k2) == 0,
        "two connections from one address are allowed");
  CHECK(vcg__limits_acquire(&l, SA(mapped), &k3) == 0, "another address has its own count");
  int kx;
  CHECK(vcg__limits_acquire(&l, SA(a1), &kx) == VCG_EAGAIN, "the third from one address is refused");
  CHECK(vcg__limits_acquire(&l, SA(lo), &kl) == 0 && !kl, "trusted addresses are not counted per address");
  int ky, kz;
  CHECK(vcg__limits_acquire(&l, SA(lo), &ky) == 0 && vcg__limits_acquire(&l, SA(lo), &kz) == VCG_EBUSY,
        "the global limit applies to trusted addresses too");
  vcg__limits_release(&l, SA(a1), k1);
  CHECK(vcg__limits_acquire(&l, SA(a1), &kx) == 0, "a released slot can be taken again");
  char *bad[] = { "nonsense", NULL };
  vcg__limits_t l2;
  CHECK(vcg__limits_init(&l2, 5, 2, bad, err, sizeof err) != 0 && strstr(err, "nonsense"),
        "a bad trusted address is reported");
  vcg__limits_free(&l);
  return TAP_DONE();
}
