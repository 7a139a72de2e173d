// One step of the Wigner-block recursion D^l = C^T (D^{l-1} x D^1) C, as the trilinear form
//
//   F(D, R, G) = sum_e sum_{a,b} G[e,a,b] sum_{i,j,k,n} C[i,j,a] C[k,n,b] D[e,i,k] R[e,j,n]
//
// (D: (E, 2l-1, 2l-1) blocks of degree l-1, R: (E, 3, 3) the rotations, G: (E, 2l+1, 2l+1) blocks of degree l,
// C = sqrt(2l+1) wigner_3j(l-1, 1, l) given as its nnz non-zero entries (i, j, a) -> value, 10 l - 9 of its
// 3 (2l-1)(2l+1) entries) contracted into any subset of its slots, each from the other two: slot 2 is the next
// block, slots 0 and 1 its gradients. Per edge, through a scratch Y[i][j][b] ((2l-1) x 3 x (2l+1)):
//   slot 2:     Y[i][j][b] = sum_{(k,n,b)} C D[i][k] R[j][n],  G[a][b] = sum_{(i,j,a)} C Y[i][j][b];
//   slots 0, 1: Y[i][j][b] = sum_{(i,j,a)} C G[a][b],  dD[i][k] = sum_{(k,n,b)} C sum_j Y[i][j][b] R[j][n],
//               dR[j][n] = sum_{(k,n,b)} C sum_i Y[i][j][b] D[i][k].
// Parallel over edges, each edge's sums in a fixed order (thread-count independent). All tensors contiguous.
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

template <typename T>
void wigner_step(const T* d, const T* r, const T* g, T* out_d, T* out_r, T* out_g, int64_t E, int64_t l,
                 const int64_t* nz, const T* val, int64_t nnz, int nthreads) {
    const int64_t A = 2 * l - 1, Bn = 2 * l + 1, Y = A * 3 * Bn;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && E > 64)
    {
        std::vector<T> y(Y);
#pragma omp for schedule(static)
        for (int64_t e = 0; e < E; ++e) {
            const T* re = r ? r + e * 9 : nullptr;
            const T* de = d ? d + e * A * A : nullptr;
            std::memset(y.data(), 0, sizeof(T) * Y);
            if (out_g) {
                for (int64_t z = 0; z < nnz; ++z) {  // the entry (k, n, b)
                    const int64_t k = nz[3 * z], n = nz[3 * z + 1], b = nz[3 * z + 2];
                    for (int64_t i = 0; i < A; ++i) {
                        const T cd = val[z] * de[i * A + k];
                        for (int64_t j = 0; j < 3; ++j) y[(i * 3 + j) * Bn + b] += cd * re[j * 3 + n];
                    }
                }
                T* o = out_g + e * Bn * Bn;
                std::memset(o, 0, sizeof(T) * Bn * Bn);
                for (int64_t z = 0; z < nnz; ++z) {  // the entry (i, j, a)
                    const T* yr = y.data() + (nz[3 * z] * 3 + nz[3 * z + 1]) * Bn;
                    T* oa = o + nz[3 * z + 2] * Bn;
                    for (int64_t b = 0; b < Bn; ++b) oa[b] += val[z] * yr[b];
                }
                continue;
            }
            const T* ge = g + e * Bn * Bn;
            for (int64_t z = 0; z < nnz; ++z) {  // the entry (i, j, a)
                T* yr = y.data() + (nz[3 * z] * 3 + nz[3 * z + 1]) * Bn;
                const T* ga = ge + nz[3 * z + 2] * Bn;
                for (int64_t b = 0; b < Bn; ++b) yr[b] += val[z] * ga[b];
            }
            T* od = out_d ? out_d + e * A * A : nullptr;
            T* orr = out_r ? out_r + e * 9 : nullptr;
            if (od) std::memset(od, 0, sizeof(T) * A * A);
            if (orr) std::memset(orr, 0, sizeof(T) * 9);
            for (int64_t z = 0; z < nnz; ++z) {  // the entry (k, n, b)
                const int64_t k = nz[3 * z], n = nz[3 * z + 1], b = nz[3 * z + 2];
                const T c = val[z];
                for (int64_t i = 0; i < A; ++i) {
                    const T* yi = y.data() + i * 3 * Bn + b;  // Y[i][j][b] at yi[j * Bn]
                    if (od) od[i * A + k] += c * (yi[0] * re[n] + yi[Bn] * re[3 + n] + yi[2 * Bn] * re[6 + n]);
                    if (orr) {
                        const T cd = c * de[i * A + k];
                        for (int64_t j = 0; j < 3; ++j) orr[j * 3 + n] += cd * yi[j * Bn];
                    }
                }
            }
        }
    }
}

}  // namespace

extern "C" {
// d, r, g: contiguous (null for an output slot); out_*: non-null for the slots to compute (out_g alone, or any of
// out_d, out_r); nz (nnz, 3) int64 and val (nnz,): the entries of C, indices in range
#define FASTSO3_WIGNER_STEP(T, SUFFIX)                                                                           \
    void fastso3_wigner_step_##SUFFIX(const T* d, const T* r, const T* g, T* out_d, T* out_r, T* out_g, int64_t E, \
                                      int64_t l, const int64_t* nz, const T* val, int64_t nnz, int nthreads) {     \
        wigner_step<T>(d, r, g, out_d, out_r, out_g, E, l, nz, val, nnz, nthreads);                              \
    }

FASTSO3_WIGNER_STEP(float, f32)
FASTSO3_WIGNER_STEP(double, f64)
}
