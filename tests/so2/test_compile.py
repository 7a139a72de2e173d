import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from fastso3.so2 import SO2_conv_e, SO2Convolution, get_mask, get_message

pytestmark = pytest.mark.compile


def _inputs(b, c=3, h=4, L=3):
    x = torch.randn(b, c, L, 2 * L + 1) * get_mask(L)
    return (x, torch.randn(b, 2), torch.randn(b, h, 2 * L), torch.randn(b, h), torch.randn(b, 3))


def test_get_message_compiles_once_for_any_edge_count():
    torch._dynamo.reset()
    conv = SO2_conv_e(3, 2, 4, 3, 2, 2)
    counter = CompileCounterWithBackend("inductor")
    fn = torch.compile(lambda *a: get_message(*a, conv, 3), backend=counter, fullgraph=True, dynamic=True)
    for b in (11, 23, 40):  # distinct from every feature size (duck sizing would tie them)
        args = _inputs(b)
        y, y0 = fn(*args)
        r, r0 = get_message(*args, conv, 3)
        torch.testing.assert_close(y, r, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(y0, r0, atol=1e-5, rtol=1e-5)
    assert counter.frame_count == 1


def test_module_compiles_with_backward():
    torch._dynamo.reset()
    conv = SO2Convolution("4x0e+4x1o+4x2e", "4x0e+4x1o+4x2e", mmax=1, hidden=8)
    counter = CompileCounterWithBackend("inductor")
    fn = torch.compile(conv, backend=counter, fullgraph=True, dynamic=True)
    for n, e in ((5, 13), (11, 37)):
        x = conv.irreps_in.randn(n, -1)
        ei = torch.randint(0, n, (2, e))
        v = torch.randn(e, 3, requires_grad=True)
        y = fn(x, ei, v)
        (g,) = torch.autograd.grad(y.pow(2).sum(), v)
        r = conv(x, ei, v)
        (gr,) = torch.autograd.grad(r.pow(2).sum(), v)
        torch.testing.assert_close(y, r, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(g, gr, atol=1e-3, rtol=1e-3)
    assert counter.frame_count == 1
