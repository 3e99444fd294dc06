"""env.keep_freed_memory: importing tinygrad_attn on Linux/glibc lets freed arrays be reused without page faults."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tinygrad_attn import env

ROOT = Path(__file__).resolve().parents[1]
glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="mallopt's thresholds are glibc's")

# a step's temporaries: eight 1 MB arrays made and freed, five times; glibc returns the freed top of its heap
# to the system (trimming) and faults the pages in again next time. Prints the minor page faults after the first.
FAULTS = """
import resource, numpy as np{imports}
a = [np.ones(1 << 18, np.float32) for _ in range(8)]; del a
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    a = [np.ones(1 << 18, np.float32) for _ in range(8)]; del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(imports, **variables):
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **variables}
    out = subprocess.run([sys.executable, "-c", FAULTS.format(imports=imports)], env=environment,
                         capture_output=True, text=True, check=True)
    return int(out.stdout)


@glibc_only
@pytest.mark.parametrize("imports, variables, few", [
    ("", {}, False),                                       # NumPy alone: each array is mmapped and faulted in again
    ("\nimport tinygrad_attn", {}, True),                  # after the import: the freed block is reused
    ("\nimport tinygrad_attn", {"TINYGRAD_ATTN_MALLOC": "0"}, False),  # the opt-out
])
def test_importing_the_package_keeps_freed_arrays_in_the_process(imports, variables, few):
    n = faults(imports, **variables)
    assert (n < 100) if few else (n > 1000), n  # 40 arrays of 256 pages each: ~10,000 faults without reuse


def test_the_opt_out_variable_turns_it_off(monkeypatch):
    monkeypatch.setenv("TINYGRAD_ATTN_MALLOC", "0")
    assert env.keep_freed_memory() is False
    monkeypatch.delenv("TINYGRAD_ATTN_MALLOC")
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert env.keep_freed_memory() is expected
