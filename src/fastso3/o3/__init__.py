"""e3nn-style PyTorch front: rotations, Wigner D, spherical harmonics."""
