"""srkit.inference.fast.backends: every backend declares what it serves, the choice follows the CPU and the
build at run time, and the two-form parts fall back to their plain modules when a kernel declines."""
from __future__ import annotations

import pytest
import torch

from srkit.inference.fast import backends, cpu_fp32, modules, prepare_fast, to_fast_input
from srkit.inference.precision import native_bf16


def test_every_backend_declares_device_dtypes_and_what_it_needs():
    names = [b.name for b in backends.registered()]
    assert {"cpu_fp32", "onednn_fp32", "onednn_bf16", "cuda_fp32", "cuda_half"} <= set(names)
    assert len(names) == len(set(names))
    for b in backends.registered():
        assert b.device in ("cpu", "cuda") and b.dtypes and all(isinstance(d, torch.dtype) for d in b.dtypes)
        assert b.needs and b.runs
        why = b.why_not()
        assert isinstance(why, str) and b.available() == (why == "")
    with pytest.raises(ValueError, match="already registered"):
        backends.register(backends.registered()[0].__class__(**{**backends.registered()[0].__dict__}))


def test_the_cpu_choice_follows_the_cpu_and_the_build(monkeypatch):
    """float32 on the CPU: the streamed kernels first where they run, oneDNN after them; turned off, oneDNN
    alone, and the streamed backend says why. bf16 is served only where the CPU has native bf16 units."""
    fp32 = [b.name for b in backends.serving("cpu", None)]
    assert fp32[-1] == "onednn_fp32" or not torch.backends.mkldnn.is_available()
    assert ("cpu_fp32" in fp32) == cpu_fp32.available()
    if cpu_fp32.available():
        assert fp32.index("cpu_fp32") < fp32.index("onednn_fp32")
    monkeypatch.setenv("SRKIT_CPU_KERNELS", "off")
    monkeypatch.setattr(cpu_fp32, "_LIB", None)
    assert "cpu_fp32" not in [b.name for b in backends.serving("cpu", torch.float32)]
    assert "turned off" in cpu_fp32.BACKEND.why_not()
    bf16 = [b.name for b in backends.serving("cpu", torch.bfloat16)]
    assert ("onednn_bf16" in bf16) == bool(native_bf16())
    assert all(b.device == "cpu" for b in backends.serving("cpu", torch.bfloat16))
    assert not backends.serving("cuda", torch.float16) or torch.cuda.is_available()


def test_a_declined_kernel_runs_the_plain_modules():
    """The one rule of the two-form parts: when the streamed kernel returns None, the plain modules' output
    is what comes back (here on a CARN-M whose tail is a two-form part)."""
    from carn.net import CARN_M
    torch.manual_seed(0)
    fast = prepare_fast(CARN_M(scale=2, multi_scale=False).eval())
    parts = [m for m in fast.modules() if isinstance(m, modules.StreamedOrPlain)]
    assert parts, "CARN-M's x2 tail is a two-form part"
    x = to_fast_input(torch.rand(1, 3, 9, 11))
    with torch.inference_mode():
        want = fast(x, 2)
        calls = []

        class Declines(torch.nn.Module):
            def forward(self, *args):
                calls.append(1)
                return None
        for p in parts:
            p.streamed = Declines()
        got = fast(x, 2)
    assert calls, "the declining kernel was asked"
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)

