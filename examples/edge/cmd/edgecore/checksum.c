// The C part of edgecore: an FNV-1a checksum, built and linked only with cgo.
#include "checksum.h"

const char *edgecore_c_part(void) { return "edgecore-c-part: linked"; }

unsigned int edgecore_checksum(const unsigned char *data, unsigned long size) {
  unsigned int hash = 2166136261u;
  for (unsigned long i = 0; i < size; i++) {
    hash ^= data[i];
    hash *= 16777619u;
  }
  return hash;
}
