"""Retained freed memory: big tensors stop costing page faults once srkit.memory is on (measured, not timed).
Who turns it on: tests/test_upscale_api.py (the CLIs do, library calls do not)."""
from __future__ import annotations

import json
import subprocess
import sys
import pytest

_PROBE = """
import json, resource
import torch
from carn import CARN_M
from srkit.fast import prepare_fast, to_fast_input
from srkit.memory import retain_freed_memory

torch.manual_seed(0)
net = CARN_M().eval()
fast = prepare_fast(net)
x = torch.rand(1, 3, 200, 200)  # x2: the 256-channel upsampling maps are 41 MB, above glibc's mmap threshold
xf = to_fast_input(x)

def faults(model, inp):
    with torch.inference_mode():
        model(inp, 2)  # warm-up
        t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            model(inp, 2)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - t0

plain0, fast0 = faults(net, x), faults(fast, xf)
on = retain_freed_memory()
print(json.dumps([plain0, fast0, on, faults(net, x), faults(fast, xf)]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_retained_memory_stops_page_faults():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         check=True).stdout
    plain0, fast0, on, plain1, fast1 = json.loads(out.strip().splitlines()[-1])
    assert on is True
    assert plain0 >= 3 * 2 * 41e6 / 4096, plain0      # default: big maps are fresh memory, faulted in each pass
    assert fast0 <= 0.75 * plain0, (fast0, plain0)     # the fused rewrites allocate fewer big maps
    # retained: reused; what is left (0-7,500 seen, a 10 MB block in some passes) is under 2% of the default
    assert plain1 <= 0.03 * plain0 and fast1 <= 0.03 * plain0, (plain1, fast1)
