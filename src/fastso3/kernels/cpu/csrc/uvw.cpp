// Fully connected ("uvw") tensor products: the 4-linear form
//
//   F(g, x1, x2, W) = sum_p c_p sum_{ijk} C_ijk sum_{u,v,w} g[w,k] x1[u,i] x2[v,j] W_p[u,v,w]
//
// contracted over three of its slots (0: g, 1: x1, 2: x2, 3: W) into the fourth. The forward product is
// slot 0; every derivative is another slot, so one kernel serves derivatives of every order.
//
// Samples are processed in blocks with the paths outermost, so a path's weights (shared weights, or
// the block's rows of per-sample weights) stay in cache while its samples stream through. The work per
// sample and path is two small dense stages through a per-thread scratch T[u*v][k]:
//   slot 0: T = C(x1, x2),  out[w,k] += c sum_uv T[uv,k] W[uv,w]
//   slot 3: T = C(x1, x2),  dW[uv,w] += c sum_k T[uv,k] g[w,k]
//   slot 1/2: H[uv,k] = c sum_w W[uv,w] g[w,k], then contract H with C and the other input.
// Shared weights have stride 0; when they are the output, each thread sums into its own buffer and the
// buffers are added in thread order afterwards, so the result is deterministic for a thread count.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

namespace {

constexpr int64_t SAMPLE_BLOCK = 16;

struct Path {
    int64_t off_out, mw, d3, off1, mu, d1, off2, mv, d2, off_w, cg_start, cg_end;
};

template <typename T>
struct Scratch {
    std::vector<T> t, acc, gt, x1t, x2t, wt, dt;
};

// dst[c * rows + r] = src[r * cols + c]
template <typename T>
inline void transpose(const T* __restrict src, int64_t rows, int64_t cols, T* __restrict dst) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

// out[k][q] = sum_r a[k][r] b[r][q] for k < KD, r < nr, q < nq (row-major, rows nr and nq long). The
// KD x (one cache line) accumulator tile stays in registers: KD FMAs per load of b.
template <typename T, int KD>
void tile_gemm(const T* __restrict a, int64_t nr, const T* __restrict b, int64_t nq, T* __restrict out) {
    constexpr int64_t QB = 64 / sizeof(T);
    for (int64_t q0 = 0; q0 < nq; q0 += QB) {
        const int64_t nb = std::min(QB, nq - q0);
        T acc[KD][QB] = {};
        if (nb == QB) {
            for (int64_t r = 0; r < nr; ++r) {
                const T* __restrict br = b + r * nq + q0;
                for (int k = 0; k < KD; ++k) {
                    const T ak = a[k * nr + r];
#pragma omp simd
                    for (int64_t q = 0; q < QB; ++q) acc[k][q] += ak * br[q];
                }
            }
        } else {
            for (int64_t r = 0; r < nr; ++r) {
                const T* __restrict br = b + r * nq + q0;
                for (int k = 0; k < KD; ++k) {
                    const T ak = a[k * nr + r];
                    for (int64_t q = 0; q < nb; ++q) acc[k][q] += ak * br[q];
                }
            }
        }
        for (int k = 0; k < KD; ++k)
            for (int64_t q = 0; q < nb; ++q) out[k * nq + q0 + q] = acc[k][q];
    }
}

template <typename T>
void small_gemm_any(const T* __restrict a, int64_t nk, int64_t nr, const T* __restrict b, int64_t nq, T* __restrict out) {
    std::memset(out, 0, sizeof(T) * nk * nq);
    for (int64_t r = 0; r < nr; ++r)
        for (int64_t k = 0; k < nk; ++k) {
            const T ak = a[k * nr + r];
#pragma omp simd
            for (int64_t q = 0; q < nq; ++q) out[k * nq + q] += ak * b[r * nq + q];
        }
}

// out[k][q] = sum_r a[k][r] b[r][q], k < nk: register tiles for the odd sizes 2l+1 of small degrees.
template <typename T>
void small_gemm(const T* a, int64_t nk, int64_t nr, const T* b, int64_t nq, T* out) {
    switch (nk) {
        case 1: return tile_gemm<T, 1>(a, nr, b, nq, out);
        case 3: return tile_gemm<T, 3>(a, nr, b, nq, out);
        case 5: return tile_gemm<T, 5>(a, nr, b, nq, out);
        case 7: return tile_gemm<T, 7>(a, nr, b, nq, out);
        case 9: return tile_gemm<T, 9>(a, nr, b, nq, out);
        default: return small_gemm_any(a, nk, nr, b, nq, out);
    }
}

// o[r][q] += sum_k a[k][r] b[k][q] for k < KD: one load and store of o per KD FMAs.
template <typename T, int KD>
void tile_rank_update(const T* __restrict a, int64_t nr, const T* __restrict b, int64_t nq, T* __restrict o) {
    for (int64_t r = 0; r < nr; ++r) {
        T ar[KD];
        for (int k = 0; k < KD; ++k) ar[k] = a[k * nr + r];
        T* __restrict orow = o + r * nq;
#pragma omp simd
        for (int64_t q = 0; q < nq; ++q) {
            T s = orow[q];
            for (int k = 0; k < KD; ++k) s += ar[k] * b[k * nq + q];
            orow[q] = s;
        }
    }
}

template <typename T>
void rank_update(const T* a, int64_t nk, int64_t nr, const T* b, int64_t nq, T* o) {
    switch (nk) {
        case 1: return tile_rank_update<T, 1>(a, nr, b, nq, o);
        case 3: return tile_rank_update<T, 3>(a, nr, b, nq, o);
        case 5: return tile_rank_update<T, 5>(a, nr, b, nq, o);
        case 7: return tile_rank_update<T, 7>(a, nr, b, nq, o);
        default:
            for (int64_t r = 0; r < nr; ++r)
                for (int64_t k = 0; k < nk; ++k) {
                    const T ak = a[k * nr + r];
#pragma omp simd
                    for (int64_t q = 0; q < nq; ++q) o[r * nq + q] += ak * b[k * nq + q];
                }
    }
}

// t[k][u*mv + v] = sum_{ij} C_ijk x1[u,i] x2[v,j], from x2t[j][v]
template <typename T>
void cg_outer(const Path& p, const int64_t* cg_idx, const T* cg_val, const T* x1, const T* x2t, T* __restrict t) {
    const int64_t uv = p.mu * p.mv;
    std::memset(t, 0, sizeof(T) * uv * p.d3);
    for (int64_t u = 0; u < p.mu; ++u)
        for (int64_t e = p.cg_start; e < p.cg_end; ++e) {
            const int64_t i = cg_idx[3 * e], j = cg_idx[3 * e + 1], k = cg_idx[3 * e + 2];
            const T a = cg_val[e] * x1[u * p.d1 + i];
            T* __restrict tk = t + k * uv + u * p.mv;
            const T* __restrict xj = x2t + j * p.mv;
#pragma omp simd
            for (int64_t v = 0; v < p.mv; ++v) tk[v] += a * xj[v];
        }
}

// One path on one sample. Pointers are the sample's rows of the four slots (the output slot's row in
// ``out``); ``wt`` is the path's weight block transposed to [w][u*mv + v] when slot is 1 or 2. The
// scratch layouts keep every inner loop contiguous and free of horizontal reductions.
template <typename T>
void path_sample(int slot, const Path& p, T c, const int64_t* cg_idx, const T* cg_val, const T* g, const T* x1,
                 const T* x2, const T* w, const T* wt, T* out, Scratch<T>& s) {
    const int64_t uv = p.mu * p.mv, mw = p.mw, d3 = p.d3, mv = p.mv;
    T* __restrict t = s.t.data();
    T* __restrict acc = s.acc.data();
    T* __restrict gt = s.gt.data();
    T* __restrict x2t = s.x2t.data();
    x1 += p.off1;
    x2 += p.off2;
    w += p.off_w;
    g += p.off_out;
    if (slot == 0 || slot == 3) {
        transpose(x2, mv, p.d2, x2t);
        cg_outer(p, cg_idx, cg_val, x1, x2t, t);
        if (slot == 0) {  // out[w,k] += c sum_uv t[k][uv] W[uv,w]
            small_gemm(t, d3, uv, w, mw, acc);
            T* o = out + p.off_out;
            for (int64_t q = 0; q < mw; ++q)
                for (int64_t k = 0; k < d3; ++k) o[q * d3 + k] += c * acc[k * mw + q];
        } else {  // dW[uv,w] += c sum_k t[k][uv] g[w,k]
            transpose(g, mw, d3, gt);
            for (int64_t r = 0; r < uv * d3; ++r) t[r] *= c;
            rank_update(t, d3, uv, gt, mw, out + p.off_w);
        }
        return;
    }
    // slots 1 and 2: t[k][uv] = c sum_w g[w,k] W[uv,w], from gt[k][w] and wt[w][uv]
    transpose(g, mw, d3, gt);
    for (int64_t r = 0; r < mw * d3; ++r) gt[r] *= c;
    small_gemm(gt, d3, mw, wt, uv, t);
    if (slot == 1) {  // dx1[u,i] += sum_{ijk} C_ijk sum_v x2[v,j] t[k][uv]
        transpose(x2, mv, p.d2, x2t);
        T* o = out + p.off1;
        for (int64_t u = 0; u < p.mu; ++u)
            for (int64_t e = p.cg_start; e < p.cg_end; ++e) {
                const int64_t i = cg_idx[3 * e], j = cg_idx[3 * e + 1], k = cg_idx[3 * e + 2];
                const T* __restrict tk = t + k * uv + u * mv;
                const T* __restrict xj = x2t + j * mv;
                T a = T(0);
#pragma omp simd reduction(+ : a)
                for (int64_t v = 0; v < mv; ++v) a += xj[v] * tk[v];
                o[u * p.d1 + i] += cg_val[e] * a;
            }
    } else {  // dx2[v,j] += sum_{ijk} C_ijk sum_u x1[u,i] t[k][uv], accumulated as dt[j][v]
        T* __restrict dt = s.dt.data();
        std::memset(dt, 0, sizeof(T) * p.d2 * mv);
        for (int64_t u = 0; u < p.mu; ++u)
            for (int64_t e = p.cg_start; e < p.cg_end; ++e) {
                const int64_t i = cg_idx[3 * e], j = cg_idx[3 * e + 1], k = cg_idx[3 * e + 2];
                const T a = cg_val[e] * x1[u * p.d1 + i];
                const T* __restrict tk = t + k * uv + u * mv;
                T* __restrict dj = dt + j * mv;
#pragma omp simd
                for (int64_t v = 0; v < mv; ++v) dj[v] += a * tk[v];
            }
        T* o = out + p.off2;
        for (int64_t v = 0; v < mv; ++v)
            for (int64_t j = 0; j < p.d2; ++j) o[v * p.d2 + j] += dt[j * mv + v];
    }
}

// ptr[s], stride[s]: the four slots (per-sample stride; 0 = shared across samples). ``out`` has the
// output slot's layout: (nz, dims[slot]) rows, or one row of dims[3] when slot 3 is shared (stride 0).
template <typename T>
void uvw(int slot, const T* const* ptr, const int64_t* stride, T* out, int64_t out_stride, const int64_t* dims,
         int64_t nz, int64_t npaths, const int64_t* paths, const T* coef, const int64_t* cg_idx, const T* cg_val,
         int nthreads) {
    const Path* ps = reinterpret_cast<const Path*>(paths);
    int64_t t_size = 1, acc_size = 1, in_size = 1, w_size = 1;
    for (int64_t p = 0; p < npaths; ++p) {
        const Path& q = ps[p];
        t_size = std::max(t_size, q.mu * q.mv * q.d3);
        acc_size = std::max(acc_size, q.mw * q.d3);
        in_size = std::max({in_size, q.mu * q.d1, q.mv * q.d2});
        w_size = std::max(w_size, q.mu * q.mv * q.mw);
    }
    const bool transposed_w = slot == 1 || slot == 2;
    const bool shared_w = stride[3] == 0;
    // Slots 1 and 2 read each path's weights as [w][u*mv + v]: shared weights are transposed once here.
    std::vector<T> shared_wt(transposed_w && shared_w ? dims[3] : 0);
    if (!shared_wt.empty())
        for (int64_t p = 0; p < npaths; ++p)
            transpose(ptr[3] + ps[p].off_w, ps[p].mu * ps[p].mv, ps[p].mw, shared_wt.data() + ps[p].off_w);
    const bool reduce = out_stride == 0;  // shared weights as the output: sum over samples
    const int64_t out_dim = dims[slot];
    if (nthreads < 1) nthreads = 1;
    std::vector<T> partial(reduce ? out_dim * nthreads : 0, T(0));
    if (!reduce) std::memset(out, 0, sizeof(T) * out_dim * nz);
    const int64_t nblocks = (nz + SAMPLE_BLOCK - 1) / SAMPLE_BLOCK;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nblocks > 1)
    {
        Scratch<T> s{std::vector<T>(t_size), std::vector<T>(acc_size), std::vector<T>(acc_size),
                     std::vector<T>(in_size), std::vector<T>(in_size), std::vector<T>(transposed_w && !shared_w ? w_size : 0),
                     std::vector<T>(in_size)};
        T* mine = reduce ? partial.data() + out_dim * omp_get_thread_num() : nullptr;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; ++b) {
            const int64_t z1 = std::min(nz, (b + 1) * SAMPLE_BLOCK);
            for (int64_t p = 0; p < npaths; ++p) {
                const Path& q = ps[p];
                for (int64_t z = b * SAMPLE_BLOCK; z < z1; ++z) {
                    const T* w = ptr[3] + z * stride[3];
                    const T* wt = shared_w ? shared_wt.data() + q.off_w : s.wt.data();
                    if (transposed_w && !shared_w) transpose(w + q.off_w, q.mu * q.mv, q.mw, s.wt.data());
                    path_sample<T>(slot, q, coef[p], cg_idx, cg_val, ptr[0] + z * stride[0], ptr[1] + z * stride[1],
                                   ptr[2] + z * stride[2], w, wt, reduce ? mine : out + z * out_stride, s);
                }
            }
        }
    }
    if (reduce) {
        std::memset(out, 0, sizeof(T) * out_dim);
        for (int th = 0; th < nthreads; ++th)
            for (int64_t r = 0; r < out_dim; ++r) out[r] += partial[th * out_dim + r];
    }
}

}  // namespace

extern "C" {
#define FASTSO3_UVW(T, SUFFIX)                                                                                    \
    void fastso3_uvw_##SUFFIX(int slot, const T* g, const T* x1, const T* x2, const T* w, const int64_t* stride, \
                              T* out, int64_t out_stride, const int64_t* dims, int64_t nz, int64_t npaths,       \
                              const int64_t* paths, const T* coef, const int64_t* cg_idx, const T* cg_val,       \
                              int nthreads) {                                                                    \
        const T* ptr[4] = {g, x1, x2, w};                                                                        \
        uvw<T>(slot, ptr, stride, out, out_stride, dims, nz, npaths, paths, coef, cg_idx, cg_val, nthreads);     \
    }

FASTSO3_UVW(float, f32)
FASTSO3_UVW(double, f64)
}
