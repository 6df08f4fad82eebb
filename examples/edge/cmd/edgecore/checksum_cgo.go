//go:build cgo

package main

// #include "checksum.h"
import "C"

import "unsafe"

// checksum runs the C part (checksum.c).
func checksum(data []byte) (uint32, string) {
	sum := C.edgecore_checksum((*C.uchar)(unsafe.Pointer(&data[0])), C.ulong(len(data)))
	return uint32(sum), C.GoString(C.edgecore_c_part())
}
