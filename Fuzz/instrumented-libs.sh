#!/usr/bin/env bash
# Builds libpng and libjpeg-turbo with ASan and libFuzzer coverage, as static libraries the
# fuzz build links instead of the system's shared ones (`make fuzz-build FUZZ_LIBS=DIR`).
#
# Why: libFuzzer only sees edges in instrumented code. Against the system libraries the PNG
# and JPEG targets are guided by our shims alone (a few hundred edges) and ASan cannot see a
# bad write inside libpng/libjpeg; against these builds they are guided through the decoders.
#
# usage: Fuzz/instrumented-libs.sh LIBPNG_SRC LIBJPEG_TURBO_SRC OUT
#   LIBPNG_SRC          a libpng source tree, ideally the system's version (Debian 12: v1.6.39)
#   LIBJPEG_TURBO_SRC   a libjpeg-turbo 2.1.x source tree (Debian 12: 2.1.5)
#   OUT                 gets lib/libpng.a, lib/libjpeg.a and include/ (png.h, jpeglib.h, ...)
# No cmake or autotools needed: the configuration headers are written here, for x86-64/arm64
# Linux, without SIMD (intrinsics and assembly would hide code from the instrumentation).
set -euo pipefail
png=$(cd "$1" && pwd); jpeg=$(cd "$2" && pwd); mkdir -p "$3"; out=$(cd "$3" && pwd)
cc="$(dirname "$(readlink -f "$(command -v swift)")")/clang"
flags=(-O1 -g -fPIC -fsanitize=address,fuzzer-no-link -w)
mkdir -p "$out/lib" "$out/include" "$out/obj/png" "$out/obj/jpeg"

# libpng: the prebuilt pnglibconf.h is libpng's default (full) configuration.
cp "$png/scripts/pnglibconf.h.prebuilt" "$out/include/pnglibconf.h"
cp "$png/png.h" "$png/pngconf.h" "$out/include/"
for f in png pngerror pngget pngmem pngpread pngread pngrio pngrtran pngrutil pngset pngtrans pngwio pngwrite pngwtran pngwutil; do
  "$cc" "${flags[@]}" -DPNG_ARM_NEON_OPT=0 -DPNG_INTEL_SSE_OPT=0 -I"$out/include" -c "$png/$f.c" -o "$out/obj/png/$f.o" &
done
wait
rm -f "$out/lib/libpng.a"; ar rcs "$out/lib/libpng.a" "$out"/obj/png/*.o

# libjpeg-turbo: 8-bit samples, arithmetic coding on, memory source/destination on (as Debian).
version=$(sed -n "s/^set(VERSION \([0-9.]*\))/\1/p" "$jpeg/CMakeLists.txt" | head -1)
version=${version:-2.1.5}
cat > "$out/include/jconfig.h" <<H
#define JPEG_LIB_VERSION  62
#define LIBJPEG_TURBO_VERSION  $version
#define LIBJPEG_TURBO_VERSION_NUMBER  $(echo "$version" | awk -F. '{printf "%d%03d%03d", $1, $2, $3}')
#define C_ARITH_CODING_SUPPORTED 1
#define D_ARITH_CODING_SUPPORTED 1
#define MEM_SRCDST_SUPPORTED 1
#define BITS_IN_JSAMPLE  8
H
cat > "$out/include/jconfigint.h" <<H
#define BUILD  "fuzz"
#undef inline
#define INLINE  __inline__ __attribute__((always_inline))
#define THREAD_LOCAL  __thread
#define PACKAGE_NAME  "libjpeg-turbo"
#define VERSION  "$version"
#define SIZEOF_SIZE_T  8
#define HAVE_BUILTIN_CTZL
#define FALLTHROUGH  __attribute__((fallthrough));
H
sed -e "s/@COPYRIGHT_YEAR@/2022/" "$jpeg/jversion.h.in" > "$out/include/jversion.h" 2>/dev/null || cp "$jpeg/jversion.h" "$out/include/"
cp "$jpeg/jpeglib.h" "$jpeg/jmorecfg.h" "$jpeg/jerror.h" "$out/include/"
for f in jcapimin jcapistd jccoefct jccolor jcdctmgr jchuff jcicc jcinit jcmainct jcmarker jcmaster jcomapi jcparam \
         jcphuff jcprepct jcsample jctrans jdapimin jdapistd jdatadst jdatasrc jdcoefct jdcolor jddctmgr jdhuff jdicc \
         jdinput jdmainct jdmarker jdmaster jdmerge jdphuff jdpostct jdsample jdtrans jerror jfdctflt jfdctfst jfdctint \
         jidctflt jidctfst jidctint jidctred jquant1 jquant2 jutils jmemmgr jmemnobs jaricom jcarith jdarith jsimd_none; do
  "$cc" "${flags[@]}" -I"$out/include" -I"$jpeg" -c "$jpeg/$f.c" -o "$out/obj/jpeg/$f.o" &
  [ "$(jobs -r | wc -l)" -ge 4 ] && wait -n
done
wait
rm -f "$out/lib/libjpeg.a"; ar rcs "$out/lib/libjpeg.a" "$out"/obj/jpeg/*.o
echo "instrumented libpng and libjpeg-turbo in $out (lib/, include/)"
