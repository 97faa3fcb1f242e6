#!/bin/sh
# Runs a PyTorch peer script with the best settings we found for it on this
# kind of machine, so that vlp is compared with PyTorch at its best:
#  - OpenBLAS's OpenMP build (torch's BLAS then shares torch's OpenMP pool
#    instead of spinning its own pthreads against it), best kernels (no
#    OPENBLAS_CORETYPE), or those of the level VLP_CPU names (below);
#  - glibc malloc kept from returning big blocks to the OS: otherwise every
#    step maps fresh pages for its >32 MiB tensors and page faults dominate
#    (linear forward 72 ms instead of 9 at batch 128).
#   bench/peer/run.sh SCRIPT.py [args...]
set -eu
ma=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
omp_blas=/usr/lib/$ma/openblas-openmp
if [ -f "$omp_blas/libopenblas.so.0" ]; then
    export LD_LIBRARY_PATH="$omp_blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# VLP_CPU lowers vlp to a level (vlp sets OPENBLAS_CORETYPE to its core):
# the peer runs at the same level, its BLAS core, ATen's and oneDNN's ISA
case "${VLP_CPU:-}" in
    ""|native) unset OPENBLAS_CORETYPE ;;
    portable) export ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-default} DNNL_MAX_CPU_ISA=${DNNL_MAX_CPU_ISA:-SSE41}
              export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Nehalem} ;;
    avx2|avx2-vnni) export ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-avx2} DNNL_MAX_CPU_ISA=${DNNL_MAX_CPU_ISA:-AVX2}
                    export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} ;;
    *) export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX} ;;
esac
export MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824
exec "${PYTHON:-/usr/bin/python3}" "$@"
