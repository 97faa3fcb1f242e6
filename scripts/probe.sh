#!/bin/sh
# Probes the toolchain and libraries and writes the make fragment $1.
# Prints what it found; fails with a message when a required part is missing.
set -eu
out=$1
CC=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

try_cc() { # try_cc <source> <flags...>
    src=$1; shift
    printf '%s\n' "$src" > "$tmp/t.c"
    $CC "$tmp/t.c" -o "$tmp/t" "$@" >/dev/null 2>&1
}

# OpenMP
if try_cc '#include <omp.h>
int main(void){return omp_get_max_threads()<1;}' -fopenmp; then
    OMP_FLAGS=-fopenmp; omp_msg="yes (-fopenmp)"
else
    OMP_FLAGS=; omp_msg="no: ops run on one thread"
fi

# BLAS: OpenBLAS's OpenMP build first (one thread pool shared with our loops;
# inside a parallel region its GEMMs run on the calling thread), then any
# OpenBLAS pkg-config knows, then a plain cblas.
ma=$($CC -print-multiarch 2>/dev/null || true)
blas_src='#include <cblas.h>
int main(void){float a=1,b=1,c=0;cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,1,1,1,1.f,&a,1,&b,1,0.f,&c,1);return c!=1.f;}'
BLAS_CFLAGS=; BLAS_LIBS=; blas_msg=
for variant in openmp pthread; do
    inc=/usr/include/$ma/openblas-$variant
    lib=/usr/lib/$ma/openblas-$variant
    if [ -n "$ma" ] && [ -f "$inc/cblas.h" ] && [ -f "$lib/libopenblas.so" ]; then
        cf="-I$inc -DVLP_HAVE_OPENBLAS"
        lf="-L$lib -Wl,-rpath,$lib -lopenblas"
        if try_cc "$blas_src" $cf $lf $OMP_FLAGS; then
            BLAS_CFLAGS=$cf; BLAS_LIBS=$lf; blas_msg="OpenBLAS ($variant build) in $lib"; break
        fi
    fi
done
if [ -z "$blas_msg" ] && pkg-config --exists openblas 2>/dev/null; then
    cf="$(pkg-config --cflags openblas) -DVLP_HAVE_OPENBLAS"; lf=$(pkg-config --libs openblas)
    if try_cc "$blas_src" $cf $lf; then BLAS_CFLAGS=$cf; BLAS_LIBS=$lf; blas_msg="OpenBLAS (pkg-config)"; fi
fi
if [ -z "$blas_msg" ] && try_cc "$blas_src" -lcblas; then
    BLAS_LIBS=-lcblas; blas_msg="generic cblas (slow: install libopenblas-openmp-dev)"
fi
if [ -z "$blas_msg" ]; then
    echo "probe: no CBLAS found; run scripts/deps.sh (needs libopenblas-openmp-dev)" >&2
    exit 1
fi

# need_pkg <pkg-config name> <Debian package> <VAR prefix>: a required library
need_pkg() {
    if ! pkg-config --exists "$1" 2>/dev/null; then
        echo "probe: $1 not found; run scripts/deps.sh (needs $2)" >&2
        exit 1
    fi
    eval "$3_CFLAGS=\$(pkg-config --cflags $1)"
    eval "$3_LIBS=\$(pkg-config --libs $1)"
    eval "$3_msg=\"$1 \$(pkg-config --modversion $1)\""
}
need_pkg jansson libjansson-dev JSON   # JSON configs and headers
need_pkg libpng libpng-dev PNG         # images
need_pkg libjpeg libjpeg-dev JPEG      # (libjpeg-turbo)
need_pkg libwebpdemux libwebp-dev WEBP    # (with libwebp: animations' first frame)
need_pkg libgif libgif-dev GIF         # (giflib: a GIF's first frame)
need_pkg libtiff-4 libtiff-dev TIFF    # (a TIFF's first page)
need_pkg stb libstb-dev STB            # (stb_image: BMP)
need_pkg libpcre2-8 libpcre2-dev PCRE  # the tokenizer's Unicode pre-tokenizer
need_pkg libutf8proc libutf8proc-dev UTF8PROC # Unicode lower-casing
need_pkg zlib zlib1g-dev ZLIB          # gzip'd merges files
need_pkg libxxhash libxxhash-dev XXHASH # image content hashes (vlp data dedup)
json_msg=$JSON_msg; png_msg="$PNG_msg, $JPEG_msg, $WEBP_msg, $GIF_msg, $TIFF_msg, $STB_msg"
text_msg="$PCRE_msg, $UTF8PROC_msg, $ZLIB_msg, $XXHASH_msg"

# MPI (optional): data-parallel training with mpirun
if pkg-config --exists ompi-c 2>/dev/null; then
    MPI_CFLAGS="$(pkg-config --cflags ompi-c) -DVLP_HAVE_MPI"; MPI_LIBS=$(pkg-config --libs ompi-c)
    if try_cc '#include <mpi.h>
int main(void){return MPI_VERSION < 3;}' $MPI_CFLAGS $MPI_LIBS; then
        mpi_msg="OpenMPI $(pkg-config --modversion ompi-c)"
    else
        MPI_CFLAGS=; MPI_LIBS=; mpi_msg="ompi-c found but does not build: no MPI"
    fi
else
    MPI_CFLAGS=; MPI_LIBS=; mpi_msg="no (install libopenmpi-dev for mpirun training)"
fi

# cmocka, for the tests
if pkg-config --exists cmocka 2>/dev/null; then
    CMOCKA_CFLAGS=$(pkg-config --cflags cmocka); CMOCKA_LIBS=$(pkg-config --libs cmocka)
    cmocka_msg="yes ($(pkg-config --modversion cmocka))"
else
    CMOCKA_CFLAGS=; CMOCKA_LIBS=-lcmocka; cmocka_msg="not found by pkg-config; trying -lcmocka"
fi

cat > "$out" <<MK
# written by scripts/probe.sh; delete to probe again
OMP_FLAGS = $OMP_FLAGS
BLAS_CFLAGS = $BLAS_CFLAGS
BLAS_LIBS = $BLAS_LIBS
JSON_CFLAGS = $JSON_CFLAGS
JSON_LIBS = $JSON_LIBS
IMG_CFLAGS = $PNG_CFLAGS $JPEG_CFLAGS $WEBP_CFLAGS $GIF_CFLAGS $TIFF_CFLAGS $STB_CFLAGS
IMG_LIBS = $PNG_LIBS $JPEG_LIBS $WEBP_LIBS $GIF_LIBS $TIFF_LIBS $STB_LIBS
TEXT_CFLAGS = $PCRE_CFLAGS $UTF8PROC_CFLAGS $ZLIB_CFLAGS $XXHASH_CFLAGS
TEXT_LIBS = $PCRE_LIBS $UTF8PROC_LIBS $ZLIB_LIBS $XXHASH_LIBS
MPI_CFLAGS = $MPI_CFLAGS
MPI_LIBS = $MPI_LIBS
CMOCKA_CFLAGS = $CMOCKA_CFLAGS
CMOCKA_LIBS = $CMOCKA_LIBS
MK
echo "probe: compiler  $($CC --version | head -n1)"
echo "probe: OpenMP    $omp_msg"
echo "probe: BLAS      $blas_msg"
echo "probe: JSON      $json_msg"
echo "probe: images    $png_msg"
echo "probe: text      $text_msg"
echo "probe: MPI       $mpi_msg"
echo "probe: cmocka    $cmocka_msg"
