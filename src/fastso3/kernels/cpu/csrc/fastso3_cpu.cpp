// fastso3 CPU kernels: plain C ABI, no libtorch or Python headers, so the build takes about a second.
//
// Both kernels work on blocks of BLOCK rows held "structure of arrays" ([component][row]) in a
// per-thread scratch buffer: every table entry then becomes one contiguous, vectorisable loop over
// the rows of the block, instead of a scattered scalar update per row.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef __AVX__
#include <immintrin.h>
#endif

namespace {

constexpr int64_t BLOCK = 64;

// dst[j * ds + i] = src[i * ss + j] for a rows x cols matrix. Moving between the callers' row-major
// (point, component) layout and the kernels' (component, point) blocks is what bounds these
// kernels, so full 8x8 (float) and 4x4 (double) tiles go through AVX registers where available.
template <typename T>
inline void transpose_scalar(const T* src, int64_t ss, T* dst, int64_t ds, int64_t rows, int64_t cols) {
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) dst[j * ds + i] = src[i * ss + j];
}

#ifdef __AVX__
inline void transpose_tile(const float* src, int64_t ss, float* dst, int64_t ds) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ss);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; ++i) {
        _mm256_storeu_ps(dst + i * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}

inline void transpose_tile(const double* src, int64_t ss, double* dst, int64_t ds) {
    __m256d r0 = _mm256_loadu_pd(src), r1 = _mm256_loadu_pd(src + ss);
    __m256d r2 = _mm256_loadu_pd(src + 2 * ss), r3 = _mm256_loadu_pd(src + 3 * ss);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    _mm256_storeu_pd(dst, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(dst + ds, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(dst + 2 * ds, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(dst + 3 * ds, _mm256_permute2f128_pd(t1, t3, 0x31));
}

template <typename T>
void transpose(const T* src, int64_t ss, T* dst, int64_t ds, int64_t rows, int64_t cols) {
    constexpr int64_t W = 32 / sizeof(T);
    const int64_t rt = rows - rows % W, ct = cols - cols % W;
    for (int64_t i = 0; i < rt; i += W)
        for (int64_t j = 0; j < ct; j += W) transpose_tile(src + i * ss + j, ss, dst + j * ds + i, ds);
    transpose_scalar(src + ct, ss, dst + ct * ds, ds, rows, cols - ct);
    transpose_scalar(src + rt * ss, ss, dst + rt, ds, rows - rt, ct);
}
#else
template <typename T>
void transpose(const T* src, int64_t ss, T* dst, int64_t ds, int64_t rows, int64_t cols) {
    transpose_scalar(src, ss, dst, ds, rows, cols);
}
#endif

template <typename T>
struct Table {
    int64_t nnz;
    const int64_t* out;
    const int64_t* in1;
    const int64_t* in2;
    const T* coef;
};

// Y[0] = 1; Y[out[e]] += coef[e] * Y[in1[e]] * u[in2[e]] (entries sorted by out); then Y *= scale.
template <typename T>
void sh_forward(const T* __restrict xyz, T* __restrict out, int64_t n, bool normalize, int64_t size,
                Table<T> t, const T* __restrict scale, int nthreads) {
    const int64_t nblocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nblocks > 1)
    {
        std::vector<T> scratch((size + 3) * BLOCK);
        T* __restrict y = scratch.data();
        T* __restrict u = y + size * BLOCK;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; ++b) {
            const int64_t r0 = b * BLOCK;
            const int64_t rows = (r0 + BLOCK <= n) ? BLOCK : n - r0;
            transpose(xyz + 3 * r0, 3, u, BLOCK, rows, 3);
            if (normalize) {
#pragma omp simd
                for (int64_t r = 0; r < BLOCK; ++r) {
                    // Rescaled by the largest component before squaring, so |x| ~ 1e-30 or 1e19 in float32
                    // neither underflows nor overflows. A zero vector stays zero: Y^0 = 1, Y^{l>=1} = 0.
                    const T m = std::max(std::abs(u[r]), std::max(std::abs(u[BLOCK + r]), std::abs(u[2 * BLOCK + r])));
                    const T d = m > T(0) ? m : T(1);
                    const T y0 = u[r] / d, y1 = u[BLOCK + r] / d, y2 = u[2 * BLOCK + r] / d;
                    const T inv = m > T(0) ? T(1) / std::sqrt(y0 * y0 + y1 * y1 + y2 * y2) : T(0);
                    u[r] = y0 * inv;
                    u[BLOCK + r] = y1 * inv;
                    u[2 * BLOCK + r] = y2 * inv;
                }
            }
            // Entries are sorted by output: accumulate each output in a local block (registers).
            for (int64_t r = 0; r < BLOCK; ++r) y[r] = T(1);
            int64_t e = 0;
            for (int64_t k = 1; k < size; ++k) {
                T acc[BLOCK] = {};
                for (; e < t.nnz && t.out[e] == k; ++e) {
                    const T* __restrict src = y + t.in1[e] * BLOCK;
                    const T* __restrict ui = u + t.in2[e] * BLOCK;
                    const T c = t.coef[e];
#pragma omp simd
                    for (int64_t r = 0; r < BLOCK; ++r) acc[r] += c * src[r] * ui[r];
                }
                std::memcpy(y + k * BLOCK, acc, sizeof(acc));
            }
            for (int64_t k = 1; k < size; ++k) {
                const T s = scale[k];
#pragma omp simd
                for (int64_t r = 0; r < BLOCK; ++r) y[k * BLOCK + r] *= s;
            }
            for (int64_t r = 0; r < BLOCK; ++r) y[r] = scale[0];
            transpose(y, BLOCK, out + r0 * size, size, size, rows);
        }
    }
}

// out[row, out[e]] += coef[e] * x1[row, in1[e]] * x2[row, in2[e]]  for every row (faster if sorted by out).
template <typename T>
void sparse_accumulate(const T* __restrict x1, const T* __restrict x2, T* __restrict out, int64_t n, int64_t n1,
                       int64_t n2, int64_t nout, Table<T> t, int nthreads) {
    const int64_t nblocks = (n + BLOCK - 1) / BLOCK;
    bool sorted = true;
    for (int64_t e = 1; e < t.nnz; ++e) sorted = sorted && t.out[e - 1] <= t.out[e];
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nblocks > 1)
    {
        std::vector<T> scratch((n1 + n2 + nout) * BLOCK);
        T* __restrict a = scratch.data();
        T* __restrict c = a + n1 * BLOCK;
        T* __restrict acc = c + n2 * BLOCK;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; ++b) {
            const int64_t r0 = b * BLOCK;
            const int64_t rows = (r0 + BLOCK <= n) ? BLOCK : n - r0;
            transpose(x1 + r0 * n1, n1, a, BLOCK, rows, n1);
            transpose(x2 + r0 * n2, n2, c, BLOCK, rows, n2);
            std::memset(acc, 0, sizeof(T) * nout * BLOCK);
            if (sorted) {
                // one output at a time, accumulated in registers
                for (int64_t e = 0; e < t.nnz;) {
                    const int64_t k = t.out[e];
                    T local[BLOCK] = {};
                    for (; e < t.nnz && t.out[e] == k; ++e) {
                        const T* __restrict s1 = a + t.in1[e] * BLOCK;
                        const T* __restrict s2 = c + t.in2[e] * BLOCK;
                        const T w = t.coef[e];
#pragma omp simd
                        for (int64_t r = 0; r < BLOCK; ++r) local[r] += w * s1[r] * s2[r];
                    }
                    std::memcpy(acc + k * BLOCK, local, sizeof(local));
                }
            } else {
                for (int64_t e = 0; e < t.nnz; ++e) {
                    T* __restrict dst = acc + t.out[e] * BLOCK;
                    const T* __restrict s1 = a + t.in1[e] * BLOCK;
                    const T* __restrict s2 = c + t.in2[e] * BLOCK;
                    const T w = t.coef[e];
#pragma omp simd
                    for (int64_t r = 0; r < BLOCK; ++r) dst[r] += w * s1[r] * s2[r];
                }
            }
            transpose(acc, BLOCK, out + r0 * nout, nout, nout, rows);
        }
    }
}

// Cotangent of u = x / |x|: out = (g - u (u . g)) / |x|, and 0 at x = 0 (where u is held at 0).
template <typename T>
void normalize_vjp(const T* __restrict x, const T* __restrict g, T* __restrict out, int64_t n, int nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && n > 4 * BLOCK)
    for (int64_t i = 0; i < n; ++i) {
        const T* xi = x + 3 * i;
        const T* gi = g + 3 * i;
        // |x| = m |y| with y = x / m (m the largest component): no overflow or underflow in the squares.
        const T m = std::max(std::abs(xi[0]), std::max(std::abs(xi[1]), std::abs(xi[2])));
        const T d = m > T(0) ? m : T(1);
        const T y[3] = {xi[0] / d, xi[1] / d, xi[2] / d};
        const T inv = m > T(0) ? T(1) / std::sqrt(y[0] * y[0] + y[1] * y[1] + y[2] * y[2]) : T(0);
        const T s = (y[0] * gi[0] + y[1] * gi[1] + y[2] * gi[2]) * inv * inv;
        for (int k = 0; k < 3; ++k) out[3 * i + k] = (gi[k] - y[k] * s) * inv / d;
    }
}

}  // namespace

extern "C" {

#define FASTSO3_INSTANTIATE(T, SUFFIX)                                                                          \
    void fastso3_sh_forward_##SUFFIX(const T* xyz, T* out, int64_t n, int normalize, int64_t size, int64_t nnz, \
                                     const int64_t* e_out, const int64_t* e_in, const int64_t* e_dim,          \
                                     const T* coef, const T* scale, int nthreads) {                             \
        sh_forward<T>(xyz, out, n, normalize != 0, size, Table<T>{nnz, e_out, e_in, e_dim, coef}, scale,       \
                      nthreads);                                                                                \
    }                                                                                                           \
    void fastso3_sparse_accumulate_##SUFFIX(const T* x1, const T* x2, T* out, int64_t n, int64_t n1,          \
                                            int64_t n2, int64_t nout, int64_t nnz, const int64_t* e_out,       \
                                            const int64_t* e_in1, const int64_t* e_in2, const T* coef,         \
                                            int nthreads) {                                                     \
        sparse_accumulate<T>(x1, x2, out, n, n1, n2, nout, Table<T>{nnz, e_out, e_in1, e_in2, coef},          \
                             nthreads);                                                                         \
    }                                                                                                           \
    void fastso3_normalize_vjp_##SUFFIX(const T* x, const T* g, T* out, int64_t n, int nthreads) {             \
        normalize_vjp<T>(x, g, out, n, nthreads);                                                               \
    }

FASTSO3_INSTANTIATE(float, f32)
FASTSO3_INSTANTIATE(double, f64)

int fastso3_abi_version(void) { return 1; }
}
