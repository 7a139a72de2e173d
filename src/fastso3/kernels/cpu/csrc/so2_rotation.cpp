// Edge-frame rotation of padded SO(2) features: the trilinear form
//
//   F(y, W, x) = sum_{b,c,l} sum_{|m - K| <= l+1} sum_{|n - L| <= l+1} y[b,c,l,m] W[b,l,m,n] x[b,c,l,n]
//
// (x: (B, C, L, N = 2L+1) padded features, W: (B, L, M = 2K+1, N) Wigner blocks, y: (B, C, L, M) features in
// the edge frame; index l holds degree l+1, whose block is the valid rows and columns) contracted into any subset of its slots, each from the other two: slot 0 rotates (y = W x),
// slot 2 rotates back (x = W^T y, zero outside degree l's 2l+1 columns), slot 1 is the gradient of W. A null W
// is the identity (M = N, slots 0 and 2 only): the same layouts and masking, without the products. A
// backward computes its two gradients in one pass, reading the cotangent once.
//
// One edge at a time: its feature blocks (40 KB at C = 128, L = 6) are gathered channels-innermost into
// per-thread scratch, so every inner loop is a contiguous axpy or dot over the channels, and only each
// degree's block of W is touched. Outputs: y as m-major (M, B, L, C) memory (the layout in which the
// SO(2) bottleneck's matmuls read it in place), x as contiguous (B, C, L, N) (transposed from scratch in
// cache), W's gradient as contiguous (B, L, M, N). An optional row index makes the x slot read as input node
// features: edge b reads row index[b] of x (the gather fused into the per-edge copy into scratch); an x
// output is always per edge (the caller sums blocks of edges into their nodes, deterministically).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// A strided 4-d tensor: element (b, i, j, k) at data[b*s[0] + i*s[1] + j*s[2] + k*s[3]].
template <typename T>
struct View {
    const T* data;
    const int64_t* s;
    const int64_t* rows = nullptr;  // edge b reads row rows[b] (null: row b)
    int64_t row(int64_t b) const { return rows ? rows[b] : b; }
    T at(int64_t b, int64_t i, int64_t j, int64_t k) const { return data[b * s[0] + i * s[1] + j * s[2] + k * s[3]]; }
};

// dst[(l*K + k)*C + c] = v(b, c, l, k): one edge's features, channels innermost
template <typename T>
void gather(const View<T>& v, int64_t b, int64_t C, int64_t L, int64_t K, T* __restrict dst) {
    const T* base = v.data + v.row(b) * v.s[0];
    for (int64_t l = 0; l < L; ++l)
        for (int64_t k = 0; k < K; ++k) {
            const T* src = base + l * v.s[2] + k * v.s[3];
            T* __restrict row = dst + (l * K + k) * C;
            if (v.s[1] == 1) std::memcpy(row, src, sizeof(T) * C);
            else
                for (int64_t c = 0; c < C; ++c) row[c] = src[c * v.s[1]];
        }
}

// row m (order m - K) belongs to the block of degree l+1
inline bool row_valid(int64_t m, int64_t K, int64_t l) { return m >= K - l - 1 && m <= K + l + 1; }

template <typename T>
void so2_rotation(View<T> y, View<T> w, View<T> x, T* const* outs, int64_t B, int64_t C, int64_t L, int64_t M,
                  int nthreads) {
    const int64_t N = 2 * L + 1, K = (M - 1) / 2;
    const bool need_y = outs[1] || outs[2], need_x = outs[0] || outs[1];
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && B > 1)
    {
        std::vector<T> ys(need_y ? L * M * C : 0), xs(need_x ? L * N * C : 0), xo(outs[2] ? L * N * C : 0);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; ++b) {
            if (need_y) gather(y, b, C, L, M, ys.data());
            if (need_x) gather(x, b, C, L, N, xs.data());
            if (outs[0]) {  // y[m][b][l][:] = sum_n W[l,m,n] x[l][n][:]
                for (int64_t l = 0; l < L; ++l)
                    for (int64_t m = 0; m < M; ++m) {
                        T* __restrict o = outs[0] + ((m * B + b) * L + l) * C;
                        std::memset(o, 0, sizeof(T) * C);
                        if (!row_valid(m, K, l)) continue;
                        if (!w.data) {  // identity: the frame is the input's own (M == N)
                            std::memcpy(o, xs.data() + (l * N + m) * C, sizeof(T) * C);
                            continue;
                        }
                        for (int64_t n = L - l - 1; n < L + l + 2; ++n) {
                            const T a = w.at(b, l, m, n);
                            const T* __restrict xr = xs.data() + (l * N + n) * C;
#pragma omp simd
                            for (int64_t c = 0; c < C; ++c) o[c] += a * xr[c];
                        }
                    }
            }
            if (outs[2]) {  // x[l][n][:] = sum_m W[l,m,n] y[l][m][:] for the valid n, else 0; stored (C, L, N)
                T* __restrict sc = xo.data();
                std::memset(sc, 0, sizeof(T) * L * N * C);
                for (int64_t l = 0; l < L; ++l)
                    for (int64_t n = L - l - 1; n < L + l + 2; ++n) {
                        T* __restrict o = sc + (l * N + n) * C;
                        if (!w.data) {
                            std::memcpy(o, ys.data() + (l * M + n) * C, sizeof(T) * C);
                            continue;
                        }
                        for (int64_t m = std::max<int64_t>(0, K - l - 1); m < std::min(M, K + l + 2); ++m) {
                            const T a = w.at(b, l, m, n);
                            const T* __restrict yr = ys.data() + (l * M + m) * C;
#pragma omp simd
                            for (int64_t c = 0; c < C; ++c) o[c] += a * yr[c];
                        }
                    }
                T* __restrict ob = outs[2] + b * C * L * N;
                for (int64_t c = 0; c < C; ++c)
                    for (int64_t r = 0; r < L * N; ++r) ob[c * L * N + r] = sc[r * C + c];
            }
            if (outs[1]) {  // dW[l,m,n] = sum_c y[l][m][c] x[l][n][c] for the valid n, else 0
                T* __restrict ob = outs[1] + b * L * M * N;
                std::memset(ob, 0, sizeof(T) * L * M * N);
                for (int64_t l = 0; l < L; ++l)
                    for (int64_t m = std::max<int64_t>(0, K - l - 1); m < std::min(M, K + l + 2); ++m) {
                        const T* __restrict yr = ys.data() + (l * M + m) * C;
                        for (int64_t n = L - l - 1; n < L + l + 2; ++n) {
                            const T* __restrict xr = xs.data() + (l * N + n) * C;
                            T acc = T(0);
#pragma omp simd reduction(+ : acc)
                            for (int64_t c = 0; c < C; ++c) acc += yr[c] * xr[c];
                            ob[(l * M + m) * N + n] = acc;
                        }
                    }
            }
        }
    }
}

}  // namespace

extern "C" {
// y, W, x: data and 4 strides each (unused for an output slot); xi: null, or the row of x read by each edge
// (x an input); outs[s] non-null for the slots to compute
#define FASTSO3_SO2_ROTATION(T, SUFFIX)                                                                          \
    void fastso3_so2_rotation_##SUFFIX(const T* y, const int64_t* sy, const T* w, const int64_t* sw, const T* x, \
                                       const int64_t* sx, const int64_t* xi, T* out0, T* out1, T* out2,          \
                                       int64_t B, int64_t C, int64_t L, int64_t M, int nthreads) {               \
        T* const outs[3] = {out0, out1, out2};                                                                   \
        so2_rotation<T>(View<T>{y, sy}, View<T>{w, sw}, View<T>{x, sx, xi}, outs, B, C, L, M, nthreads);         \
    }

FASTSO3_SO2_ROTATION(float, f32)
FASTSO3_SO2_ROTATION(double, f64)
}
