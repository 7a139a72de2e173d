"""``fastso3.util.memory.retain_freed_memory``: glibc's malloc settings, run in a subprocess (they are process-wide)."""

import subprocess
import sys

import pytest

from fastso3.util.memory import retain_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_takes_effect_on_glibc_and_keeps_a_freed_block():
    """After the call, freed 16 and 64 MiB tensors' memory stays in the process: the resident set does not drop."""
    code = """
import torch
from fastso3.util.memory import retain_freed_memory
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:"))
print(retain_freed_memory())
for mib in (16, 64):  # below and above glibc's largest mmap threshold (32 MiB)
    t = torch.ones(mib << 18)  # touched
    before = rss()
    del t
    print(before - rss() < 4096)  # KiB: nothing close to the block went back to the system
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True", "True"]


@pytest.mark.parametrize("kwargs", [{"trim_threshold": -1}, {"top_pad": 1 << 31}, {"trim_threshold": 1.5}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="retain_freed_memory"):
        retain_freed_memory(**kwargs)
