import pytest
import torch

from fastso3.o3 import Irreps
from fastso3.so2 import from_padded, get_mask, padded_irreps, to_padded


def test_get_mask_matches_fastso3_docstring():
    assert get_mask(2).tolist() == [[[[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]]]]
    assert get_mask(3).shape == (1, 1, 3, 7) and get_mask(3).dtype == torch.int32
    assert int(get_mask(4).sum()) == sum(2 * l + 1 for l in range(1, 5))


def test_padded_roundtrip_and_padding_is_zero():
    irreps = Irreps("3x0e+2x1o+1x2e+1x2e+2x3o+1x0o")
    assert padded_irreps(irreps) == (4, 2, 3)
    x = irreps.randn(5, -1)
    xp, x0 = to_padded(x, irreps)
    assert xp.shape == (5, 2, 3, 7) and x0.shape == (5, 4)
    assert (xp * (1 - get_mask(3))).abs().max() == 0
    torch.testing.assert_close(from_padded(xp, x0, irreps), x, rtol=0, atol=0)
    # degree 2, second channel comes from the second 1x2e entry
    torch.testing.assert_close(xp[:, 1, 1, 1:6], x[:, 3 + 6 + 5 : 3 + 6 + 10])


@pytest.mark.parametrize("irreps", ["2x1o+1x2e", "1x2e"])
def test_padded_irreps_rejects_ragged(irreps):
    with pytest.raises(ValueError, match="one common multiplicity"):
        padded_irreps(irreps)


def test_bad_shapes():
    with pytest.raises(ValueError, match="last dimension"):
        to_padded(torch.zeros(2, 5), "1x0e+1x1o")
    with pytest.raises(ValueError, match="expected x_pad"):
        from_padded(torch.zeros(2, 1, 2, 5), torch.zeros(2, 1), "1x0e+1x1o")
    with pytest.raises(ValueError, match="non-negative int"):
        get_mask(-1)
