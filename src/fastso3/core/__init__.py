"""Framework-neutral core: irreps, Clebsch-Gordan and Wigner tables, plans. Imports numpy only."""
