"""What the machine and the environment decide: how many threads BLAS uses, whether the demos run small,
and whether freed memory stays in the process.

    from tinygrad_attn.env import quick, set_blas_threads
    set_blas_threads(1)            # small matrices: one thread beats two that wait on each other
    steps = 20 if quick() else 400 # TINYGRAD_ATTN_QUICK=1 (the test suite, `demo --quick`) makes demos small

Importing tinygrad_attn calls keep_freed_memory() once; TINYGRAD_ATTN_MALLOC=0 turns that off.
"""

import ctypes
import os
import sys

QUICK_VARIABLE = "TINYGRAD_ATTN_QUICK"
MALLOC_VARIABLE = "TINYGRAD_ATTN_MALLOC"


def quick():
    """True when the demos should run at small sizes (the test suite sets TINYGRAD_ATTN_QUICK=1)."""
    return os.environ.get(QUICK_VARIABLE, "") not in ("", "0")


def set_blas_threads(n):
    """Ask NumPy's BLAS (through threadpoolctl) and, if it is imported, PyTorch to use n threads each;
    returns BLAS's previous number of threads, or None.

    The matrices here are small: one thread beats two that wait on each other (by far on a busy machine).
    torch is set only when something else imported it, so a comparison runs both with the same threads.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    threadpool_limits(int(n), user_api="blas")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(n))
    return before[0] if before else None


def keep_freed_memory(mmap_threshold=256 << 20, trim_threshold=1 << 30):
    """On Linux with glibc, let malloc reuse freed arrays instead of handing them back to the system; returns
    True if it did, False elsewhere or when TINYGRAD_ATTN_MALLOC=0.

    By default glibc gives each array over ~128 KB its own mmap and returns it on free, so every training step
    page-faults its temporaries in again (thousands of faults a step). mallopt(M_MMAP_THRESHOLD) serves
    arrays below mmap_threshold bytes from the heap and mallopt(M_TRIM_THRESHOLD) keeps up to trim_threshold
    bytes of freed heap, as the environment variables MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ do.
    """
    if os.environ.get(MALLOC_VARIABLE, "") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):  # glibc only: musl's mallopt has no such options
            return False
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))
                    and libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
    except (OSError, AttributeError):  # no libc.so.6, or a libc without these symbols
        return False
