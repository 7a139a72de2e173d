// Edge-frame rotation of per-node tables of hidden features: the trilinear form
//
//   F(e, W, P) = sum_{b,m,h} sum_{l: |m - K| <= l+1} sum_{|n - L| <= l+1} e[m,b,h] W[b,l,m,n] P[l,index[b],n,m,h]
//
// (e: (M = 2K+1, B, H) per-edge hidden features by order, W: (B, L, M, N = 2L+1) Wigner blocks, P: (L, R, N, M, H)
// a table per node, degree-major (the layout in which per-degree matmuls over the nodes write and read it), index: (B,) the node row of each edge; index l holds degree l+1, only its block counts)
// contracted into any subset of its slots, each from the other two: slot 0 (e) rotates each edge's table row
// into the frame, slot 2 (P) sums each edge's rotated-back hidden features into its node, slot 1 is W's gradient.
// Every inner loop is a contiguous axpy or dot over the hidden axis H. Slots 0 and 1 are parallel over edges;
// slot 2 is parallel over nodes, each summing its edges in the order given by a stable node-sorted edge list
// (order, starts), so results do not depend on the thread count. Entries outside the blocks are never read and
// written as zero. All tensors contiguous.
#include <algorithm>
#include <cstdint>
#include <cstring>

namespace {

template <typename T>
void so2_table(const T* e, const T* w, const T* p, const int64_t* index, const int64_t* order, const int64_t* starts,
               T* out_e, T* out_w, T* out_p, int64_t B, int64_t R, int64_t L, int64_t M, int64_t H, int nthreads) {
    const int64_t N = 2 * L + 1, K = (M - 1) / 2;
    // rows m of degree index l: |m - K| <= l + 1
    auto m_lo = [&](int64_t l) { return std::max<int64_t>(0, K - l - 1); };
    auto m_hi = [&](int64_t l) { return std::min<int64_t>(M, K + l + 2); };
    if (out_e || out_w) {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (nthreads > 1 && B > 1)
        for (int64_t b = 0; b < B; ++b) {
            const T* pb = p + index[b] * N * M * H;  // + l R N M H for degree index l
            const T* wb = w + b * L * M * N;
            if (out_e) {  // e[m,b,:] = sum_{l,n} W[b,l,m,n] P[l,i,n,m,:]
                for (int64_t m = 0; m < M; ++m) std::memset(out_e + (m * B + b) * H, 0, sizeof(T) * H);
                for (int64_t l = 0; l < L; ++l)
                    for (int64_t m = m_lo(l); m < m_hi(l); ++m) {
                        T* __restrict o = out_e + (m * B + b) * H;
                        for (int64_t n = L - l - 1; n < L + l + 2; ++n) {
                            const T a = wb[(l * M + m) * N + n];
                            const T* __restrict src = pb + ((l * R * N + n) * M + m) * H;
#pragma omp simd
                            for (int64_t h = 0; h < H; ++h) o[h] += a * src[h];
                        }
                    }
            }
            if (out_w) {  // dW[b,l,m,n] = sum_h e[m,b,h] P[l,i,n,m,h] in the blocks, else 0
                T* __restrict ob = out_w + b * L * M * N;
                std::memset(ob, 0, sizeof(T) * L * M * N);
                for (int64_t l = 0; l < L; ++l)
                    for (int64_t m = m_lo(l); m < m_hi(l); ++m) {
                        const T* __restrict er = e + (m * B + b) * H;
                        for (int64_t n = L - l - 1; n < L + l + 2; ++n) {
                            const T* __restrict src = pb + ((l * R * N + n) * M + m) * H;
                            T acc = T(0);
#pragma omp simd reduction(+ : acc)
                            for (int64_t h = 0; h < H; ++h) acc += er[h] * src[h];
                            ob[(l * M + m) * N + n] = acc;
                        }
                    }
            }
        }
    }
    if (out_p) {  // P[l,i,n,m,:] = sum_{b: index[b] = i} W[b,l,m,n] e[m,b,:] in the blocks, else 0
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 16) if (nthreads > 1 && R > 1)
        for (int64_t i = 0; i < R; ++i) {
            T* __restrict pi = out_p + i * N * M * H;  // + l R N M H for degree index l
            for (int64_t l = 0; l < L; ++l) std::memset(pi + l * R * N * M * H, 0, sizeof(T) * N * M * H);
            for (int64_t k = starts[i]; k < starts[i + 1]; ++k) {
                const int64_t b = order[k];
                const T* wb = w + b * L * M * N;
                for (int64_t l = 0; l < L; ++l)
                    for (int64_t m = m_lo(l); m < m_hi(l); ++m) {
                        const T* __restrict er = e + (m * B + b) * H;
                        for (int64_t n = L - l - 1; n < L + l + 2; ++n) {
                            const T a = wb[(l * M + m) * N + n];
                            T* __restrict o = pi + ((l * R * N + n) * M + m) * H;
#pragma omp simd
                            for (int64_t h = 0; h < H; ++h) o[h] += a * er[h];
                        }
                    }
            }
        }
    }
}

}  // namespace

extern "C" {
// e, W, P: contiguous (null for an output slot); index (B,); order, starts: the node-sorted edges (slot 2 only);
// out_*: non-null for the slots to compute
#define FASTSO3_SO2_TABLE(T, SUFFIX)                                                                              \
    void fastso3_so2_table_##SUFFIX(const T* e, const T* w, const T* p, const int64_t* index, const int64_t* order, \
                                    const int64_t* starts, T* out_e, T* out_w, T* out_p, int64_t B, int64_t R,      \
                                    int64_t L, int64_t M, int64_t H, int nthreads) {                               \
        so2_table<T>(e, w, p, index, order, starts, out_e, out_w, out_p, B, R, L, M, H, nthreads);                \
    }

FASTSO3_SO2_TABLE(float, f32)
FASTSO3_SO2_TABLE(double, f64)
}
