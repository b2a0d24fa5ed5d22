/* CFuzzerDriver: the one libFuzzer entry point the fuzz targets call, declared with its C
 * signature (compiler-rt's FuzzerInterface.h), so Swift calls it with the C calling convention.
 *
 * Nothing here defines it: a fuzzing build links compiler-rt's libclang_rt.fuzzer_no_main
 * (see `make fuzz-build`), and a normal build never references it (the call sits under
 * `#if FUZZING`). No stable API; only Fuzz/Support imports it. */
#ifndef FA_FUZZER_DRIVER_H
#define FA_FUZZER_DRIVER_H

#include <stddef.h>
#include <stdint.h>

typedef int (*fa_fuzz_callback)(const uint8_t *data, size_t size);

int LLVMFuzzerRunDriver(int *argc, char ***argv, fa_fuzz_callback callback);

#endif
