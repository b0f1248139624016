#include "stats.h"
#include "vcgate/plugin.h"

const double vcg__lat_bounds[VCG__LAT_N] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1, 0.25, 0.5, 1, 2.5, 5 };

int vcg__close_code_index(int why) {
  switch (vcg_close_ws_code(why)) {
  case 1001: return VCG__CC_1001;
  case 1002: return VCG__CC_1002;
  case 1007: return VCG__CC_1007;
  case 1008: return VCG__CC_1008;
  case 1009: return VCG__CC_1009;
  case 1013: return VCG__CC_1013;
  case 1000: return VCG__CC_NONE;
  default: return VCG__CC_1011;
  }
}

int vcg__reject_index(int why) {
  switch (why) {
  case VCG_CLOSE_BAD_REQUEST: case VCG_CLOSE_PROTOCOL: case VCG_CLOSE_BAD_DATA:
  case VCG_CLOSE_METHOD: return VCG__RJ_BAD_REQUEST;
  case VCG_CLOSE_UNAUTHORIZED: return VCG__RJ_UNAUTHORIZED;
  case VCG_CLOSE_FORBIDDEN: return VCG__RJ_FORBIDDEN;
  case VCG_CLOSE_NOT_FOUND: return VCG__RJ_NOT_FOUND;
  case VCG_CLOSE_GONE: return VCG__RJ_GONE;
  case VCG_CLOSE_LIMIT: return VCG__RJ_LIMIT;
  case VCG_CLOSE_OVERLOAD: case VCG_CLOSE_TOO_BIG: return VCG__RJ_OVERLOAD;
  case VCG_CLOSE_SHUTDOWN: return VCG__RJ_SHUTDOWN;
  default: return VCG__RJ_INTERNAL;
  }
}

void vcg__latency_record(vcg__stats_t *st, uint64_t ms) {
  int i = 0;
  while (i < VCG__LAT_N && (double)ms / 1000.0 > vcg__lat_bounds[i]) i++;
  VCG__ADD(st->latency[i], 1);
  VCG__ADD(st->latency_sum_ms, ms);
  VCG__ADD(st->latency_count, 1);
}
