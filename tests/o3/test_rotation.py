"""Rotation helpers (fastso3.o3._rotation) against e3nn 0.6.0 and their own identities."""

import math

import pytest
import torch

from fastso3.o3 import _rotation as r

e3nn_o3 = pytest.importorskip("e3nn.o3")

TOL = 1e-12
N = 500


def _err(x, y):
    if isinstance(x, tuple):
        assert isinstance(y, tuple) and len(x) == len(y)
        return max(_err(u, v) for u, v in zip(x, y))
    assert x.shape == y.shape, (x.shape, y.shape)
    assert x.dtype == y.dtype
    return (x - y).abs().max().item()




@pytest.fixture
def data(f64):
    torch.manual_seed(1)
    a, b, c = e3nn_o3.rand_angles(N)
    a2, b2, c2 = e3nn_o3.rand_angles(N)
    return dict(
        abc=(a, b, c),
        abc2=(a2, b2, c2),
        R=e3nn_o3.angles_to_matrix(a, b, c),
        q=e3nn_o3.angles_to_quaternion(a, b, c),
        q2=e3nn_o3.angles_to_quaternion(a2, b2, c2),
        aa=e3nn_o3.angles_to_axis_angle(a, b, c),
        aa2=e3nn_o3.angles_to_axis_angle(a2, b2, c2),
        xyz=torch.randn(N, 3),
    )


# ---------------------------------------------------------------------------------------------------------------
# against e3nn


@pytest.mark.e3nn
@pytest.mark.parametrize("name", ["matrix_x", "matrix_y", "matrix_z"])
def test_elementary_matrices(data, name):
    a = data["abc"][0]
    assert _err(getattr(r, name)(a), getattr(e3nn_o3, name)(a)) <= TOL


@pytest.mark.e3nn
@pytest.mark.parametrize(
    "name, args",
    [
        ("angles_to_matrix", lambda d: d["abc"]),
        ("matrix_to_angles", lambda d: (d["R"],)),
        ("angles_to_quaternion", lambda d: d["abc"]),
        ("matrix_to_quaternion", lambda d: (d["R"],)),
        ("axis_angle_to_quaternion", lambda d: d["aa"]),
        ("quaternion_to_axis_angle", lambda d: (d["q"],)),
        ("matrix_to_axis_angle", lambda d: (d["R"],)),
        ("angles_to_axis_angle", lambda d: d["abc"]),
        ("axis_angle_to_matrix", lambda d: d["aa"]),
        ("quaternion_to_matrix", lambda d: (d["q"],)),
        ("quaternion_to_angles", lambda d: (d["q"],)),
        ("axis_angle_to_angles", lambda d: d["aa"]),
        ("angles_to_xyz", lambda d: d["abc"][:2]),
        ("xyz_to_angles", lambda d: (d["xyz"],)),
        ("compose_angles", lambda d: d["abc"] + d["abc2"]),
        ("inverse_angles", lambda d: d["abc"]),
        ("compose_quaternion", lambda d: (d["q"], d["q2"])),
        ("inverse_quaternion", lambda d: (d["q"],)),
        ("compose_axis_angle", lambda d: d["aa"] + d["aa2"]),
    ],
)
def test_matches_e3nn(data, name, args):
    a = args(data)
    assert _err(getattr(r, name)(*a), getattr(e3nn_o3, name)(*a)) <= TOL


@pytest.mark.e3nn
@pytest.mark.parametrize(
    "name", ["rand_angles", "rand_matrix", "rand_quaternion", "rand_axis_angle", "identity_angles", "identity_quaternion"]
)
@pytest.mark.parametrize("shape", [(), (7,), (3, 2)])
def test_random_and_identity_match_e3nn_stream(f64, name, shape):
    torch.manual_seed(5)
    ours = getattr(r, name)(*shape)
    torch.manual_seed(5)
    ref = getattr(e3nn_o3, name)(*shape)
    assert _err(ours, ref) <= TOL


@pytest.mark.e3nn
def test_angle_ranges_match_e3nn(data):
    a, b, c = r.matrix_to_angles(data["R"])
    assert a.min() >= -math.pi and a.max() <= math.pi
    assert c.min() >= -math.pi and c.max() <= math.pi
    assert b.min() >= 0 and b.max() <= math.pi
    _, angle = r.matrix_to_axis_angle(data["R"])
    assert angle.min() >= 0 and angle.max() <= math.pi
    _, angle = r.rand_axis_angle(100)
    assert angle.min() >= 0 and angle.max() <= math.pi
    # quaternion_to_axis_angle keeps the sign of w: angle in [0, 2pi] as in e3nn
    _, angle = r.quaternion_to_axis_angle(-data["q"])
    _, ref = e3nn_o3.quaternion_to_axis_angle(-data["q"])
    assert angle.max() > math.pi and _err(angle, ref) <= TOL


# ---------------------------------------------------------------------------------------------------------------
# identities and round trips


def test_rand_properties(f64):
    R = r.rand_matrix(200)
    assert R.shape == (200, 3, 3)
    assert (R @ R.mT - torch.eye(3)).abs().max() <= 1e-14
    assert (torch.linalg.det(R) - 1).abs().max() <= 1e-14
    a, b, c = r.rand_angles(1000)
    assert a.min() >= 0 and a.max() < 2 * math.pi and c.min() >= 0 and c.max() < 2 * math.pi
    assert b.min() >= 0 and b.max() <= math.pi
    q = r.rand_quaternion(100)
    assert (q.norm(dim=-1) - 1).abs().max() <= 1e-14
    axis, angle = r.rand_axis_angle(100)
    assert (axis.norm(dim=-1) - 1).abs().max() <= 1e-14


@pytest.mark.parametrize("fn", [r.rand_matrix, r.rand_quaternion, r.identity_quaternion])
def test_requires_grad_and_dtype_flags(fn):
    x = fn(4, requires_grad=True, dtype=torch.float32)
    assert x.requires_grad and x.is_leaf and x.dtype == torch.float32
    x = fn(4)
    assert not x.requires_grad


@pytest.mark.parametrize("fn", [r.rand_angles, r.identity_angles, r.rand_axis_angle])
def test_requires_grad_tuple(fn):
    for x in fn(2, 3, requires_grad=True, dtype=torch.float64):
        assert x.requires_grad and x.is_leaf and x.dtype == torch.float64 and x.shape[:2] == (2, 3)


def test_identities(f64):
    a, b, c = r.identity_angles(3)
    assert torch.equal(r.angles_to_matrix(a, b, c), torch.eye(3).expand(3, 3, 3))
    assert torch.equal(r.quaternion_to_matrix(r.identity_quaternion(2)), torch.eye(3).expand(2, 3, 3))


def test_euler_convention_and_activeness(f64):
    t = torch.tensor(0.7)
    assert _err(r.angles_to_matrix(t, 0 * t, 0 * t), r.matrix_y(t)) == 0
    assert _err(r.angles_to_matrix(0 * t, t, 0 * t), r.matrix_x(t)) <= 1e-16
    a, b, c = torch.tensor([0.3, 1.1, -2.0])
    expected = r.matrix_y(a) @ r.matrix_x(b) @ r.matrix_y(c)
    assert _err(r.angles_to_matrix(a, b, c), expected) <= 1e-15
    # matrix_z(pi/2) maps e_x to e_y (active, right-handed)
    e = r.matrix_z(torch.tensor(math.pi / 2)) @ torch.tensor([1.0, 0, 0])
    assert _err(e, torch.tensor([0.0, 1, 0])) <= 1e-16
    # angles_to_xyz = R(alpha, beta, 0) e_y
    xyz = r.angles_to_xyz(a, b)
    assert _err(xyz, r.angles_to_matrix(a, b, torch.tensor(0.0)) @ torch.tensor([0.0, 1, 0])) <= 1e-15


def test_angles_round_trip(data):
    R = data["R"]
    assert _err(r.angles_to_matrix(*r.matrix_to_angles(R)), R) <= 1e-14
    q = data["q"]
    q_back = r.angles_to_quaternion(*r.quaternion_to_angles(q))
    assert (q_back - q).abs().amax(-1).minimum((q_back + q).abs().amax(-1)).max() <= 1e-14


def test_quaternion_matrix_consistency(data):
    q, R = data["q"], data["R"]
    assert _err(r.quaternion_to_matrix(q), R) <= 1e-14
    assert _err(r.quaternion_to_matrix(r.matrix_to_quaternion(R)), R) <= 1e-14
    # composition is the Hamilton product, second applied first
    q2 = data["q2"]
    R12 = r.quaternion_to_matrix(q) @ r.quaternion_to_matrix(q2)
    assert _err(r.quaternion_to_matrix(r.compose_quaternion(q, q2)), R12) <= 1e-14
    assert _err(r.compose_quaternion(q, r.inverse_quaternion(q)), r.identity_quaternion(N)) <= 1e-15


def test_axis_angle_consistency(data):
    axis, angle = r.angles_to_axis_angle(*data["abc"])  # (e3nn's own is only ~1e-13 accurate)
    R = r.axis_angle_to_matrix(axis, angle)
    assert _err(R, data["R"]) <= 1e-14
    assert _err(R @ axis[..., None], axis[..., None]) <= 1e-14  # the axis is fixed
    assert _err(r.axis_angle_to_matrix(*r.matrix_to_axis_angle(R)), R) <= 1e-14
    # the axis is normalized
    assert _err(r.axis_angle_to_matrix(3.5 * axis, angle), R) <= 1e-14
    assert _err(r.axis_angle_to_quaternion(3.5 * axis, angle), r.axis_angle_to_quaternion(axis, angle)) <= 1e-15


def test_compose_and_inverse_angles(data):
    abc, abc2 = data["abc"], data["abc2"]
    R12 = r.angles_to_matrix(*abc) @ r.angles_to_matrix(*abc2)
    assert _err(r.angles_to_matrix(*r.compose_angles(*abc, *abc2)), R12) <= 1e-14
    Rinv = r.angles_to_matrix(*r.inverse_angles(*abc))
    assert _err(Rinv, r.angles_to_matrix(*abc).mT) <= 1e-15
    aa1, aa2 = r.angles_to_axis_angle(*abc), r.angles_to_axis_angle(*abc2)
    axis, angle = r.compose_axis_angle(*aa1, *aa2)
    assert _err(r.axis_angle_to_matrix(axis, angle), R12) <= 1e-14


@pytest.mark.parametrize("beta", [0.0, math.pi, 1e-9, math.pi - 1e-9, 1e-300])
def test_matrix_to_angles_at_the_poles(f64, beta):
    a = torch.tensor([0.3, -2.0, 3.0])
    c = torch.tensor([1.7, 0.1, -3.1])
    b = torch.full_like(a, beta)
    R = r.angles_to_matrix(a, b, c)
    a2, b2, c2 = r.matrix_to_angles(R)
    assert torch.isfinite(torch.stack([a2, b2, c2])).all()
    assert _err(r.angles_to_matrix(a2, b2, c2), R) <= 1e-15
    assert (b2 - beta).abs().max() <= 1e-15


@pytest.mark.parametrize("angle", [math.pi, math.pi - 1e-9, 1e-9, 0.0])
def test_matrix_to_quaternion_robust_near_pi_and_zero(f64, angle):
    axis = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    axis[0] = torch.tensor([1.0, 0, 0])
    axis[1] = torch.tensor([0.0, 0, -1])
    R = r.axis_angle_to_matrix(axis, torch.tensor(angle))
    q = r.matrix_to_quaternion(R)
    assert (q[..., 0] >= 0).all()
    assert (q.norm(dim=-1) - 1).abs().max() <= 1e-15
    assert _err(r.quaternion_to_matrix(q), R) <= 1e-15
    axis2, angle2 = r.matrix_to_axis_angle(R)
    assert _err(r.axis_angle_to_matrix(axis2, angle2), R) <= 1e-15
    assert (angle2 - angle).abs().max() <= 1e-14


@pytest.mark.e3nn
def test_xyz_to_angles_zero_vector_and_scale(f64):
    zero = torch.zeros(3)
    a, b = r.xyz_to_angles(zero)
    assert torch.isfinite(a) and torch.isfinite(b)
    ra, rb = e3nn_o3.xyz_to_angles(zero)
    assert a.item() == ra.item() == 0.0 and b.item() == rb.item() == math.pi / 2
    x = torch.randn(20, 3)
    assert _err(r.xyz_to_angles(1e-20 * x), r.xyz_to_angles(x)) <= 1e-15
    assert _err(r.xyz_to_angles(7.0 * x), e3nn_o3.xyz_to_angles(x)) <= TOL
    # round trip through the sphere
    a, b = r.xyz_to_angles(x)
    assert _err(r.angles_to_xyz(a, b), torch.nn.functional.normalize(x, dim=-1)) <= 1e-15
    # poles
    a, b = r.xyz_to_angles(torch.tensor([[0.0, 2.0, 0.0], [0.0, -3.0, 0.0]]))
    assert b.tolist() == [0.0, math.pi] and a.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("fn", [r.matrix_to_angles, r.matrix_to_quaternion, r.matrix_to_axis_angle])
def test_improper_matrix_raises(f64, fn):
    R = r.rand_matrix(5)
    with pytest.raises(ValueError, match="det"):
        fn(-R)
    bad = R.clone()
    bad[2] = 2 * bad[2]  # one scaled matrix in the batch
    with pytest.raises(ValueError, match="det"):
        fn(bad)
    fn(R.float())  # float32 rotations pass the tolerance


def test_broadcasting(f64):
    a = torch.rand(4, 1)
    b = torch.rand(1, 5)
    c = torch.tensor(0.3)
    assert r.angles_to_matrix(a, b, c).shape == (4, 5, 3, 3)
    assert r.angles_to_quaternion(a, b, c).shape == (4, 5, 4)
    assert r.angles_to_xyz(a, b).shape == (4, 5, 3)
    out = r.compose_angles(a, b, c, b, a, c)
    assert all(x.shape == (4, 5) for x in out)
    q1, q2 = r.rand_quaternion(4, 1), r.rand_quaternion(1, 5)
    assert r.compose_quaternion(q1, q2).shape == (4, 5, 4)
    axis = torch.randn(4, 1, 3)
    angle = torch.rand(5)
    assert r.axis_angle_to_matrix(axis, angle).shape == (4, 5, 3, 3)
    assert r.axis_angle_to_quaternion(axis, angle).shape == (4, 5, 4)
    assert r.angles_to_matrix(0.1, 0.2, 0.3).shape == (3, 3)  # python numbers


def test_float32_and_dtype_propagation():
    a, b, c = r.rand_angles(10, dtype=torch.float32)
    R = r.angles_to_matrix(a, b, c)
    assert R.dtype == torch.float32
    for out in r.matrix_to_angles(R):
        assert out.dtype == torch.float32
    assert _err(r.angles_to_matrix(*r.matrix_to_angles(R)), R) <= 1e-5
    assert r.matrix_to_quaternion(R).dtype == torch.float32
    assert r.angles_to_matrix(a.double(), 0.5, 0.1).dtype == torch.float64


def test_gradients_flow(f64):
    a, b, c = (torch.tensor([0.4, 2.0], requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: r.angles_to_matrix(a, b, c), (a, b, c))
    q = r.rand_quaternion(3, requires_grad=True)
    assert torch.autograd.gradcheck(r.quaternion_to_matrix, (q,))
    R = r.rand_matrix(3, requires_grad=True)
    r.matrix_to_angles(R)[2].sum().backward()
    assert torch.isfinite(R.grad).all()
