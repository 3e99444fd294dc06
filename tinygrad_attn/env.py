"""What the machine and the environment decide: how many threads BLAS uses, and whether the demos run small.

    from tinygrad_attn.env import quick, set_blas_threads
    set_blas_threads(1)            # small matrices: one thread beats two that wait on each other
    steps = 20 if quick() else 400 # TINYGRAD_ATTN_QUICK=1 (the test suite, `demo --quick`) makes demos small
"""

import os
import sys

QUICK_VARIABLE = "TINYGRAD_ATTN_QUICK"


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
