"""fastso3.so3 (FastSo3's so3 module): frames, padded Wigner blocks, rotation, and FastSo3's equivariance check
(the steps of its check_equi.py, restated) on fastso3.so2's layers."""

import torch

import fastso3.so2 as so2
import fastso3.so3 as so3
from fastso3.o3 import matrix_to_angles, rand_matrix, wigner_D


def test_frames_take_edges_to_y_and_blocks_are_wigner_d():
    vec = torch.randn(50, 3, dtype=torch.float64)
    rot = so3.init_edge_rot_mat(vec)
    torch.testing.assert_close(rot @ (vec / vec.norm(dim=1, keepdim=True)).unsqueeze(-1),
                               torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(50, 3).unsqueeze(-1))  # fmt: skip
    W = so3.RotationToWignerDMatrix(rot, end_lmax=3)
    assert W.shape == (50, 3, 7, 7)
    torch.testing.assert_close(W[:, 0, 2:5, 2:5], rot)  # D^1(R) = R in e3nn's basis
    torch.testing.assert_close(W[:, 1, 1:6, 1:6], wigner_D(2, *matrix_to_angles(rot)))
    assert W[:, 0, :2].abs().max() == 0 and W[:, 1, :, 0].abs().max() == 0  # centred padding
    W0 = so3.RotationToWignerDMatrix(rot, end_lmax=2, start_lmax=0)
    assert W0.shape == (50, 3, 5, 5) and torch.allclose(W0[:, 0, 2, 2], torch.ones(50, dtype=torch.float64))


def test_fastso3_equivariance_check_runs_on_fastso3():
    c_in, c_out, c_hidden, L, c_L0_in, c_L0_out, b = 4, 2, 2, 2, 2, 4, 100
    x = torch.randn(b, c_in, L, 2 * L + 1) * so2.get_mask(L)
    x_L0 = torch.randn(b, c_L0_in)
    edges_vec = torch.randn(b, 3)
    for conv, w, w_L0 in [
        (so2.SO2_conv(c_in, c_out, L, c_L0_in=c_L0_in, c_L0_out=c_L0_out),
         torch.randn(b, c_in, L, 2 * L, c_out, L), torch.randn(b, c_L0_in + c_in * L, c_L0_out + c_out * L)),
        (so2.SO2_conv_e(c_in, c_out, c_hidden, L, c_L0_in=c_L0_in, c_L0_out=c_L0_out),
         torch.randn(b, c_hidden, 2 * L), torch.randn(b, c_hidden)),
    ]:  # fmt: skip
        message, message_0 = so2.get_message(x, x_L0, w, w_L0, edges_vec, conv, L)
        R = rand_matrix(1)
        R_w = so3.RotationToWignerDMatrix(R, end_lmax=L)
        x_R = so3.rotate(R_w, x)
        edges_vec_R = (R @ edges_vec.unsqueeze(-1)).squeeze(-1)
        message_R, message_0R = so2.get_message(x_R, x_L0, w, w_L0, edges_vec_R, conv, L)
        scale = message.norm()
        assert (so3.rotate(R_w, message) - message_R).norm() < 1e-5 * scale  # float32-level, as FastSo3 prints
        assert (message_0 - message_0R).norm() < 1e-5 * message_0.norm()
