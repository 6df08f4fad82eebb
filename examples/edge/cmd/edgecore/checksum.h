#ifndef EDGECORE_CHECKSUM_H
#define EDGECORE_CHECKSUM_H

const char *edgecore_c_part(void);
unsigned int edgecore_checksum(const unsigned char *data, unsigned long size);

#endif
