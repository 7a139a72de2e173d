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
    std::vector<T> t, acc, gt, x1t, x2t, wt, dt, t1;
};

// dst[c * rows + r] = src[r * cols + c]
template <typename T>
inline void transpose(const T* __restrict src, int64_t rows, int64_t cols, T* __restrict dst) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

// out[k][q] = sum_r a[k][r] b[r][q] for k < KD, r < nr, q < nq (row-major, rows nr and nq long). The
// KD x (one cache line) accumulator tile stays in registers: KD FMAs per load of b. For KD < 4 the r
// loop is split over RU independent tiles, so at least four FMA chains are in flight (an FMA's latency
// is about four of its issue slots).
template <typename T, int KD>
void tile_gemm(const T* __restrict a, int64_t nr, const T* __restrict b, int64_t nq, T* __restrict out) {
    constexpr int64_t QB = 64 / sizeof(T);
    constexpr int RU = KD >= 4 ? 1 : (KD >= 2 ? 2 : 4);
    for (int64_t q0 = 0; q0 < nq; q0 += QB) {
        const int64_t nb = std::min(QB, nq - q0);
        T acc[RU][KD][QB] = {};
        int64_t r = 0;
        if (nb == QB) {
            for (; r + RU <= nr; r += RU)
                for (int ru = 0; ru < RU; ++ru) {
                    const T* __restrict br = b + (r + ru) * nq + q0;
                    for (int k = 0; k < KD; ++k) {
                        const T ak = a[k * nr + r + ru];
#pragma omp simd
                        for (int64_t q = 0; q < QB; ++q) acc[ru][k][q] += ak * br[q];
                    }
                }
        }
        for (; r < nr; ++r) {
            const T* __restrict br = b + r * nq + q0;
            for (int k = 0; k < KD; ++k) {
                const T ak = a[k * nr + r];
                for (int64_t q = 0; q < nb; ++q) acc[0][k][q] += ak * br[q];
            }
        }
        for (int k = 0; k < KD; ++k)
            for (int64_t q = 0; q < nb; ++q) {
                T sum = acc[0][k][q];
                for (int ru = 1; ru < RU; ++ru) sum += acc[ru][k][q];
                out[k * nq + q0 + q] = sum;
            }
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
        case 2: return tile_gemm<T, 2>(a, nr, b, nq, out);
        case 3: return tile_gemm<T, 3>(a, nr, b, nq, out);
        case 4: return tile_gemm<T, 4>(a, nr, b, nq, out);
        case 5: return tile_gemm<T, 5>(a, nr, b, nq, out);
        case 6: return tile_gemm<T, 6>(a, nr, b, nq, out);
        case 7: return tile_gemm<T, 7>(a, nr, b, nq, out);
        case 8: return tile_gemm<T, 8>(a, nr, b, nq, out);
        case 9: return tile_gemm<T, 9>(a, nr, b, nq, out);
        default: return small_gemm_any(a, nk, nr, b, nq, out);
    }
}

// o[r][q] (+)= sum_k a[k][r] b[k][q] for k < KD: one load and store of o per KD FMAs; ``overwrite``
// replaces o instead of adding to it.
template <typename T, int KD>
void tile_rank_update(const T* __restrict a, int64_t nr, const T* __restrict b, int64_t nq, T* __restrict o,
                      bool overwrite) {
    for (int64_t r = 0; r < nr; ++r) {
        T ar[KD];
        for (int k = 0; k < KD; ++k) ar[k] = a[k * nr + r];
        T* __restrict orow = o + r * nq;
#pragma omp simd
        for (int64_t q = 0; q < nq; ++q) {
            T s = overwrite ? T(0) : orow[q];
            for (int k = 0; k < KD; ++k) s += ar[k] * b[k * nq + q];
            orow[q] = s;
        }
    }
}

template <typename T>
void rank_update(const T* a, int64_t nk, int64_t nr, const T* b, int64_t nq, T* o, bool overwrite) {
    switch (nk) {
        case 1: return tile_rank_update<T, 1>(a, nr, b, nq, o, overwrite);
        case 2: return tile_rank_update<T, 2>(a, nr, b, nq, o, overwrite);
        case 3: return tile_rank_update<T, 3>(a, nr, b, nq, o, overwrite);
        case 4: return tile_rank_update<T, 4>(a, nr, b, nq, o, overwrite);
        case 5: return tile_rank_update<T, 5>(a, nr, b, nq, o, overwrite);
        case 6: return tile_rank_update<T, 6>(a, nr, b, nq, o, overwrite);
        case 7: return tile_rank_update<T, 7>(a, nr, b, nq, o, overwrite);
        case 8: return tile_rank_update<T, 8>(a, nr, b, nq, o, overwrite);
        default:
            if (overwrite) std::memset(o, 0, sizeof(T) * nr * nq);
            for (int64_t r = 0; r < nr; ++r)
                for (int64_t k = 0; k < nk; ++k) {
                    const T ak = a[k * nr + r];
#pragma omp simd
                    for (int64_t q = 0; q < nq; ++q) o[r * nq + q] += ak * b[k * nq + q];
                }
    }
}

// t[k][u*mv + v] = sum_{ij} C_ijk x1[u,i] x2[v,j], from x2t[j][v]; x1t is scratch for x1 as [i][u]
template <typename T>
void cg_outer(const Path& p, const int64_t* cg_idx, const T* cg_val, const T* x1, const T* x2t, T* __restrict x1t,
              T* __restrict t) {
    const int64_t uv = p.mu * p.mv;
    std::memset(t, 0, sizeof(T) * uv * p.d3);
    if (p.mv == 1) {  // a channel-free second input (spherical harmonics): vectorise over u instead of v
        transpose(x1, p.mu, p.d1, x1t);
        for (int64_t e = p.cg_start; e < p.cg_end; ++e) {
            const int64_t i = cg_idx[3 * e], j = cg_idx[3 * e + 1], k = cg_idx[3 * e + 2];
            const T a = cg_val[e] * x2t[j];
            T* __restrict tk = t + k * uv;
            const T* __restrict xi = x1t + i * p.mu;
#pragma omp simd
            for (int64_t u = 0; u < p.mu; ++u) tk[u] += a * xi[u];
        }
        return;
    }
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

// A path's weight block W[u][v][w] transposed to [w][v*mu + u] (slot 1) or [w][u*mv + v] (slot 2): the
// layouts in which path_sample's slot 1 and 2 contractions run over contiguous rows.
template <typename T>
void transpose_weights(const Path& p, int slot, const T* __restrict w, T* __restrict dst) {
    const int64_t uv = p.mu * p.mv;
    for (int64_t u = 0; u < p.mu; ++u)
        for (int64_t v = 0; v < p.mv; ++v) {
            const T* __restrict row = w + (u * p.mv + v) * p.mw;
            T* __restrict col = dst + (slot == 1 ? v * p.mu + u : u * p.mv + v);
            for (int64_t q = 0; q < p.mw; ++q) col[q * uv] = row[q];
        }
}

// dx1[u,i] += sum_{ijk} C_ijk sum_v x2[v,j] t[k][v*mu + u] for one sample, accumulated as dt[i][u]
template <typename T>
void contract_dx1(const Path& p, const int64_t* cg_idx, const T* cg_val, const T* t, const T* x2, T* o, Scratch<T>& s) {
    const int64_t uv = p.mu * p.mv;
    T* __restrict dt = s.dt.data();
    std::memset(dt, 0, sizeof(T) * p.d1 * p.mu);
    for (int64_t e = p.cg_start; e < p.cg_end; ++e) {
        const int64_t i = cg_idx[3 * e], j = cg_idx[3 * e + 1], k = cg_idx[3 * e + 2];
        T* __restrict di = dt + i * p.mu;
        for (int64_t v = 0; v < p.mv; ++v) {
            const T a = cg_val[e] * x2[v * p.d2 + j];
            const T* __restrict tk = t + k * uv + v * p.mu;
#pragma omp simd
            for (int64_t u = 0; u < p.mu; ++u) di[u] += a * tk[u];
        }
    }
    for (int64_t u = 0; u < p.mu; ++u)
        for (int64_t i = 0; i < p.d1; ++i) o[u * p.d1 + i] += dt[i * p.mu + u];
}

// dx2[v,j] += sum_{ijk} C_ijk sum_u x1[u,i] t[k][u*mv + v] for one sample
template <typename T>
void contract_dx2(const Path& p, const int64_t* cg_idx, const T* cg_val, const T* t, const T* x1, T* o, Scratch<T>& s) {
    const int64_t uv = p.mu * p.mv, mv = p.mv;
    if (mv == 1) {  // dots over u
        T* __restrict x1t = s.x1t.data();
        transpose(x1, p.mu, p.d1, x1t);
        for (int64_t e = p.cg_start; e < p.cg_end; ++e) {
            const int64_t i = cg_idx[3 * e], j = cg_idx[3 * e + 1], k = cg_idx[3 * e + 2];
            const T* __restrict xi = x1t + i * p.mu;
            const T* __restrict tk = t + k * uv;
            T a = T(0);
#pragma omp simd reduction(+ : a)
            for (int64_t u = 0; u < p.mu; ++u) a += xi[u] * tk[u];
            o[j] += cg_val[e] * a;
        }
        return;
    }
    T* __restrict dt = s.dt.data();  // accumulated as dt[j][v]
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
    for (int64_t v = 0; v < mv; ++v)
        for (int64_t j = 0; j < p.d2; ++j) o[v * p.d2 + j] += dt[j * mv + v];
}

// Rows of sample z of the four slots and of the output (the output slot's pointer in ``ptr`` is unused).
template <typename T>
struct Rows {
    const T* const* ptr;
    const int64_t* stride;
    T* out;
    int64_t out_stride;  // 0: one shared output row (weights summed over samples)
    const T* at(int s, int64_t z) const { return ptr[s] + z * stride[s]; }
    T* out_at(int64_t z) const { return out + z * out_stride; }
};

// One path on samples z0 .. z0+ns-1, which share one weight block ``w`` (shared weights) or are a single
// sample (ns = 1, per-sample weights). ``wt`` is that block as transpose_weights lays it out, for slots 1
// and 2. Per sample, a first stage fills rows (sample, k) of t (slots 0, 3) or gt (slots 1, 2); one
// small_gemm / rank_update then runs over all ns*d3 rows, so each weight row loaded feeds ns*d3 FMAs;
// a last stage contracts per sample. The scratch layouts keep every inner loop contiguous and free of
// horizontal reductions.
template <typename T>
void path_group(int slot, const Path& p, T c, const int64_t* cg_idx, const T* cg_val, const Rows<T>& rows,
                int64_t z0, int64_t ns, const T* w, const T* wt, Scratch<T>& s) {
    const int64_t uv = p.mu * p.mv, mw = p.mw, d3 = p.d3, mv = p.mv, nk = ns * d3;
    T* __restrict t = s.t.data();
    T* __restrict acc = s.acc.data();
    T* __restrict gt = s.gt.data();
    T* __restrict x2t = s.x2t.data();
    w += p.off_w;
    if (slot == 0 || slot == 3) {
        for (int64_t n = 0; n < ns; ++n) {  // t[(n, k)][uv] = C(x1, x2)
            transpose(rows.at(2, z0 + n) + p.off2, mv, p.d2, x2t);
            cg_outer(p, cg_idx, cg_val, rows.at(1, z0 + n) + p.off1, x2t, s.x1t.data(), t + n * d3 * uv);
        }
        if (slot == 0) {  // out[w,k] += c sum_uv t[k][uv] W[uv,w]
            small_gemm(t, nk, uv, w, mw, acc);
            for (int64_t n = 0; n < ns; ++n) {
                T* o = rows.out_at(z0 + n) + p.off_out;
                const T* an = acc + n * d3 * mw;
                for (int64_t q = 0; q < mw; ++q)
                    for (int64_t k = 0; k < d3; ++k) o[q * d3 + k] += c * an[k * mw + q];
            }
        } else {  // dW[uv,w] += c sum_k t[k][uv] g[w,k]
            for (int64_t n = 0; n < ns; ++n) transpose(rows.at(0, z0 + n) + p.off_out, mw, d3, gt + n * d3 * mw);
            for (int64_t r = 0; r < nk * uv; ++r) t[r] *= c;
            // per-sample weight gradients: each path owns its block of the row, written once
            rank_update(t, nk, uv, gt, mw, rows.out_at(z0) + p.off_w, rows.out_stride != 0);
        }
        return;
    }
    // slots 1 and 2: t[k][uv] = c sum_w g[w,k] W[uv,w], from gt[k][w] and wt[w][uv] (uv in wt's order)
    for (int64_t n = 0; n < ns; ++n) transpose(rows.at(0, z0 + n) + p.off_out, mw, d3, gt + n * d3 * mw);
    for (int64_t r = 0; r < nk * mw; ++r) gt[r] *= c;
    small_gemm(gt, nk, mw, wt, uv, t);
    for (int64_t n = 0; n < ns; ++n) {
        const T* tn = t + n * d3 * uv;
        if (slot == 1) contract_dx1(p, cg_idx, cg_val, tn, rows.at(2, z0 + n) + p.off2, rows.out_at(z0 + n) + p.off1, s);
        else contract_dx2(p, cg_idx, cg_val, tn, rows.at(1, z0 + n) + p.off1, rows.out_at(z0 + n) + p.off2, s);
    }
}

// Both input gradients of one unrelabeled path (the backward of the product when x1 and x2 both need
// one): the weight-times-cotangent product t is computed once, in slot 2's [k][u*mv + v] order (``wt``
// laid out for slot 2), and transposed per k for slot 1.
template <typename T>
void path_group_pair(const Path& p, T c, const int64_t* cg_idx, const T* cg_val, const Rows<T>& rows1,
                     const Rows<T>& rows2, int64_t z0, int64_t ns, const T* wt, Scratch<T>& s) {
    const int64_t uv = p.mu * p.mv, mw = p.mw, d3 = p.d3, nk = ns * d3;
    T* __restrict t = s.t.data();
    T* __restrict gt = s.gt.data();
    T* __restrict t1 = s.t1.data();
    for (int64_t n = 0; n < ns; ++n) transpose(rows1.at(0, z0 + n) + p.off_out, mw, d3, gt + n * d3 * mw);
    for (int64_t r = 0; r < nk * mw; ++r) gt[r] *= c;
    small_gemm(gt, nk, mw, wt, uv, t);
    for (int64_t n = 0; n < ns; ++n) {
        const T* tn = t + n * d3 * uv;
        contract_dx2(p, cg_idx, cg_val, tn, rows2.at(1, z0 + n) + p.off1, rows2.out_at(z0 + n) + p.off2, s);
        for (int64_t k = 0; k < d3; ++k) transpose(tn + k * uv, p.mu, p.mv, t1 + k * uv);
        contract_dx1(p, cg_idx, cg_val, t1, rows1.at(2, z0 + n) + p.off2, rows1.out_at(z0 + n) + p.off1, s);
    }
}

// Samples per group for shared weights: enough rows (samples x d3) to reuse each weight row 8 times.
inline int64_t group_size(const Path& p, bool shared_w) { return shared_w ? std::max<int64_t>(1, 8 / p.d3) : 1; }

// Relabeling a path. The form is symmetric under swapping the cotangent g[w,k] with x1[u,i] (pivot 1)
// or with x2[v,j] (pivot 2), if the CG block's indices and the weight block's axes are swapped alike.
// path_sample's contractions always run over the cotangent's d = 2l+1 ("k"), so a path relabeled to put
// its smallest of (d1, d2, d3) there does the fewest operations.
constexpr int PIVOT_SLOT_OF[3][4] = {{0, 1, 2, 3}, {1, 0, 2, 3}, {2, 1, 0, 3}};  // an involution per pivot

inline Path relabeled(const Path& p, int pivot) {
    Path v = p;
    if (pivot == 1) {
        std::swap(v.off_out, v.off1), std::swap(v.mw, v.mu), std::swap(v.d3, v.d1);
    } else if (pivot == 2) {
        std::swap(v.off_out, v.off2), std::swap(v.mw, v.mv), std::swap(v.d3, v.d2);
    }
    return v;
}

// Between a path's weight block W[u][v][w] and its relabeled layout: W'[w][v][u] (pivot 1) or
// W'[u][w][v] (pivot 2); ``to_relabeled`` picks the direction.
template <typename T>
void relabel_weights(const Path& p, int pivot, const T* __restrict src, T* __restrict dst, bool to_relabeled) {
    for (int64_t u = 0; u < p.mu; ++u)
        for (int64_t v = 0; v < p.mv; ++v)
            for (int64_t w = 0; w < p.mw; ++w) {
                const int64_t plain = (u * p.mv + v) * p.mw + w;
                const int64_t other = pivot == 1 ? (w * p.mv + v) * p.mu + u : (u * p.mw + w) * p.mv + v;
                if (to_relabeled) dst[other] = src[plain];
                else dst[plain] = src[other];
            }
}

// ptr[s], stride[s]: the four slots (per-sample stride; 0 = shared across samples). ``out`` has the
// output slot's layout: (nz, dims[slot]) rows, or one row of dims[3] when slot 3 is shared (stride 0).
// ``pivots[p]`` relabels path p (see above); honoured for shared weights only, where relabeling the
// weights costs one pass per call instead of one per sample. With ``out2`` (slot 1 only) the call also
// writes slot 2 there: both input gradients, sharing the weight-times-cotangent product where a path is
// not relabeled.
template <typename T>
void uvw(int slot, const T* const* ptr, const int64_t* stride, T* out, T* out2, int64_t out_stride,
         const int64_t* dims, int64_t nz, int64_t npaths, const int64_t* paths, const int64_t* pivots, const T* coef,
         const int64_t* cg_idx, const T* cg_val, int nthreads) {
    const bool pair = slot == 1 && out2 != nullptr;
    const Path* ps = reinterpret_cast<const Path*>(paths);
    const bool shared_w = slot == 3 ? out_stride == 0 : stride[3] == 0;
    std::vector<int> pivot(npaths, 0);
    std::vector<Path> vp(npaths);
    int64_t nnz = 0;
    for (int64_t p = 0; p < npaths; ++p) nnz = std::max(nnz, ps[p].cg_end);
    std::vector<int64_t> vidx(cg_idx, cg_idx + 3 * nnz);
    bool any_pivot = false;
    for (int64_t p = 0; p < npaths; ++p) {
        pivot[p] = shared_w ? static_cast<int>(pivots[p]) : 0;
        vp[p] = relabeled(ps[p], pivot[p]);
        any_pivot |= pivot[p] != 0;
        if (pivot[p] != 0)  // (i, j, k) -> (k, j, i) or (i, k, j)
            for (int64_t e = ps[p].cg_start; e < ps[p].cg_end; ++e) std::swap(vidx[3 * e + 2], vidx[3 * e + pivot[p] - 1]);
    }
    // Relabeled shared weights (an input), and their [w][u*mv + v] transposes for paths computing slot 1
    // or 2 (after relabeling, that can be any input slot).
    const bool transposed_w = slot == 1 || slot == 2;
    std::vector<T> relabeled_w(slot != 3 && any_pivot ? dims[3] : 0);
    const T* w_in = ptr[3];
    if (!relabeled_w.empty()) {
        for (int64_t p = 0; p < npaths; ++p) {
            const Path& q = ps[p];
            if (pivot[p] == 0) std::memcpy(relabeled_w.data() + q.off_w, w_in + q.off_w, sizeof(T) * q.mu * q.mv * q.mw);
            else relabel_weights(q, pivot[p], w_in + q.off_w, relabeled_w.data() + q.off_w, true);
        }
        w_in = relabeled_w.data();
    }
    // the transposed layout a path reads: its (virtual) slot's; a pair reads slot 2's, or, relabeled, that
    // of whichever of its two virtual slots is not 0
    auto wt_layout = [&](int64_t p) {
        const int* of = PIVOT_SLOT_OF[pivot[p]];
        return pair ? (of[1] == 0 ? of[2] : (pivot[p] == 0 ? 2 : of[1])) : of[slot];
    };
    std::vector<T> shared_wt(shared_w && slot != 3 && (transposed_w || any_pivot) ? dims[3] : 0);
    for (int64_t p = 0; p < npaths && !shared_wt.empty(); ++p) {
        const int layout = wt_layout(p);
        if (layout == 1 || layout == 2) transpose_weights(vp[p], layout, w_in + vp[p].off_w, shared_wt.data() + vp[p].off_w);
    }

    int64_t t_size = 1, acc_size = 1, in_size = 1, w_size = 1;
    for (const Path& q : vp) {
        const int64_t rows = group_size(q, shared_w) * q.d3;
        t_size = std::max(t_size, q.mu * q.mv * rows);
        acc_size = std::max(acc_size, q.mw * rows);
        in_size = std::max({in_size, q.mu * q.d1, q.mv * q.d2});
        w_size = std::max(w_size, q.mu * q.mv * q.mw);
    }
    const bool reduce = out_stride == 0;  // shared weights as the output: sum over samples
    const int64_t out_dim = dims[slot];
    if (nthreads < 1) nthreads = 1;
    std::vector<T> partial(reduce ? out_dim * nthreads : 0, T(0));
    if (!reduce && slot != 3) std::memset(out, 0, sizeof(T) * out_dim * nz);  // paths add into shared rows
    if (pair) std::memset(out2, 0, sizeof(T) * dims[2] * nz);
    const int64_t nblocks = (nz + SAMPLE_BLOCK - 1) / SAMPLE_BLOCK;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nblocks > 1)
    {
        Scratch<T> s{std::vector<T>(t_size), std::vector<T>(acc_size), std::vector<T>(acc_size),
                     std::vector<T>(in_size), std::vector<T>(in_size),
                     std::vector<T>(transposed_w && !shared_w ? w_size : 0), std::vector<T>(in_size),
                     std::vector<T>(pair ? t_size : 0)};
        T* mine = reduce ? partial.data() + out_dim * omp_get_thread_num() : nullptr;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nblocks; ++b) {
            const int64_t z1 = std::min(nz, (b + 1) * SAMPLE_BLOCK);
            for (int64_t p = 0; p < npaths; ++p) {
                const Path& q = vp[p];
                const int* of = PIVOT_SLOT_OF[pivot[p]];
                const T* vptr[4] = {ptr[of[0]], ptr[of[1]], ptr[of[2]], w_in};
                const int64_t vstride[4] = {stride[of[0]], stride[of[1]], stride[of[2]], stride[3]};
                const Rows<T> rows{vptr, vstride, reduce ? mine : out, reduce ? 0 : out_stride};
                const Rows<T> rows2{vptr, vstride, out2, dims[2]};
                const int64_t gs = group_size(q, shared_w);
                for (int64_t z = b * SAMPLE_BLOCK; z < z1; z += gs) {
                    const int64_t ns = std::min(gs, z1 - z);
                    const T* w = w_in + z * stride[3];
                    const T* wt = shared_w ? shared_wt.data() + q.off_w : s.wt.data();
                    if (transposed_w && !shared_w) transpose_weights(q, wt_layout(p), w + q.off_w, s.wt.data());
                    if (pair && pivot[p] == 0) {
                        path_group_pair<T>(q, coef[p], vidx.data(), cg_val, rows, rows2, z, ns, wt, s);
                    } else {
                        path_group<T>(of[slot], q, coef[p], vidx.data(), cg_val, rows, z, ns, w, wt, s);
                        if (pair) path_group<T>(of[2], q, coef[p], vidx.data(), cg_val, rows2, z, ns, w, wt, s);
                    }
                }
            }
        }
    }
    if (reduce) {  // in thread order: deterministic for a thread count; relabeled blocks go back to W[u][v][w]
        std::vector<T> sum(out_dim, T(0));
        for (int th = 0; th < nthreads; ++th)
            for (int64_t r = 0; r < out_dim; ++r) sum[r] += partial[th * out_dim + r];
        for (int64_t p = 0; p < npaths; ++p) {
            const Path& q = ps[p];
            if (pivot[p] == 0) std::memcpy(out + q.off_w, sum.data() + q.off_w, sizeof(T) * q.mu * q.mv * q.mw);
            else relabel_weights(q, pivot[p], sum.data() + q.off_w, out + q.off_w, false);
        }
    }
}

// Factored per-sample weights W = h M, h: (nz, nh) per sample, M: (nh, dims[3]) shared (a radial MLP's
// last layer applied inside the product). The 5-linear form F(g, x1, x2, h, M) = F_uvw(g, x1, x2, h M)
// is contracted into any subset of its slots 0: g, 1: x1, 2: x2, 3: h, 4: M (``outs[s]`` non-null) from the
// other four. Per chunk of samples, W is made in a per-thread buffer (slots 0, 1, 2) and the weight
// gradient dW = F_3 too (slots 3, 4), projected at once: dh = dW M^T, dM = sum_z h^T dW (per-thread partial
// sums added in thread order, deterministic for a thread count). Neither W nor dW reaches memory.
constexpr int64_t FACTOR_CHUNK = 64;
constexpr int64_t FACTOR_TILE = 8;

// out[z][q] = sum_r a[z][r] b[r][q] for z < n (a: n x nr, b: nr x nq), in register tiles of FACTOR_TILE rows
template <typename T>
void rows_gemm(const T* a, int64_t n, int64_t nr, const T* b, int64_t nq, T* out) {
    for (int64_t z = 0; z < n; z += FACTOR_TILE)
        small_gemm(a + z * nr, std::min(FACTOR_TILE, n - z), nr, b, nq, out + z * nq);
}

template <typename T>
void uvw_factored(const T* const* ptr, T* const* outs, const int64_t* dims, int64_t nh, int64_t nz, int64_t npaths,
                  const int64_t* paths, const int64_t* pivots, const T* coef, const int64_t* cg_idx, const T* cg_val,
                  int nthreads) {
    const int64_t nw = dims[3];
    const bool need_w = outs[0] || outs[1] || outs[2], need_dw = outs[3] || outs[4];
    std::vector<T> mt(outs[3] ? nw * nh : 0);  // M^T, (nw, nh)
    if (outs[3]) transpose(ptr[4], nh, nw, mt.data());
    if (nthreads < 1) nthreads = 1;
    std::vector<T> partial(outs[4] ? nh * nw * nthreads : 0, T(0));
    const int64_t nchunks = (nz + FACTOR_CHUNK - 1) / FACTOR_CHUNK;
    const int64_t stride[4] = {dims[0], dims[1], dims[2], nw};
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nchunks > 1)
    {
        std::vector<T> w(need_w ? FACTOR_CHUNK * nw : 0), dw(need_dw ? FACTOR_CHUNK * nw : 0);
        T* dm = outs[4] ? partial.data() + nh * nw * omp_get_thread_num() : nullptr;
        std::vector<T> ht(dm ? nh * FACTOR_CHUNK : 0), dm_chunk(dm ? nh * nw : 0);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < nchunks; ++c) {
            const int64_t z0 = c * FACTOR_CHUNK, n = std::min(FACTOR_CHUNK, nz - z0);
            const T* h = ptr[3] + z0 * nh;
            const T* cptr[4] = {ptr[0] ? ptr[0] + z0 * dims[0] : nullptr, ptr[1] + z0 * dims[1], ptr[2] + z0 * dims[2],
                                w.data()};
            if (need_w) rows_gemm(h, n, nh, ptr[4], nw, w.data());
            if (outs[0]) uvw<T>(0, cptr, stride, outs[0] + z0 * dims[0], nullptr, dims[0], dims, n, npaths, paths, pivots,
                                coef, cg_idx, cg_val, 1);
            if (outs[1])
                uvw<T>(1, cptr, stride, outs[1] + z0 * dims[1], outs[2] ? outs[2] + z0 * dims[2] : nullptr, dims[1], dims,
                       n, npaths, paths, pivots, coef, cg_idx, cg_val, 1);
            else if (outs[2])
                uvw<T>(2, cptr, stride, outs[2] + z0 * dims[2], nullptr, dims[2], dims, n, npaths, paths, pivots, coef,
                       cg_idx, cg_val, 1);
            if (!need_dw) continue;
            uvw<T>(3, cptr, stride, dw.data(), nullptr, nw, dims, n, npaths, paths, pivots, coef, cg_idx, cg_val, 1);
            if (outs[3]) rows_gemm(dw.data(), n, nw, mt.data(), nh, outs[3] + z0 * nh);
            if (dm) {  // dM[r][q] += sum_z h[z][r] dW[z][q]: register tiles over r, the chunk's samples reduced
                transpose(h, n, nh, ht.data());
                rows_gemm(ht.data(), nh, n, dw.data(), nw, dm_chunk.data());
                for (int64_t r = 0; r < nh * nw; ++r) dm[r] += dm_chunk[r];
            }
        }
    }
    if (outs[4]) {
        std::memset(outs[4], 0, sizeof(T) * nh * nw);
        for (int th = 0; th < nthreads; ++th)
            for (int64_t r = 0; r < nh * nw; ++r) outs[4][r] += partial[th * nh * nw + r];
    }
}

}  // namespace

extern "C" {
#define FASTSO3_UVW(T, SUFFIX)                                                                                    \
    void fastso3_uvw_##SUFFIX(int slot, const T* g, const T* x1, const T* x2, const T* w, const int64_t* stride, \
                              T* out, T* out2, int64_t out_stride, const int64_t* dims, int64_t nz, int64_t npaths,       \
                              const int64_t* paths, const int64_t* pivots, const T* coef, const int64_t* cg_idx, \
                              const T* cg_val, int nthreads) {                                                   \
        const T* ptr[4] = {g, x1, x2, w};                                                                        \
        uvw<T>(slot, ptr, stride, out, out2, out_stride, dims, nz, npaths, paths, pivots, coef, cg_idx, cg_val,        \
               nthreads);                                                                                        \
    }

FASTSO3_UVW(float, f32)
FASTSO3_UVW(double, f64)

#define FASTSO3_UVW_FACTORED(T, SUFFIX)                                                                           \
    void fastso3_uvw_factored_##SUFFIX(const T* g, const T* x1, const T* x2, const T* h, const T* m, T* out0,     \
                                       T* out1, T* out2, T* out3, T* out4, const int64_t* dims, int64_t nh,       \
                                       int64_t nz, int64_t npaths, const int64_t* paths, const int64_t* pivots,   \
                                       const T* coef, const int64_t* cg_idx, const T* cg_val, int nthreads) {     \
        const T* ptr[5] = {g, x1, x2, h, m};                                                                     \
        T* const outs[5] = {out0, out1, out2, out3, out4};                                                       \
        uvw_factored<T>(ptr, outs, dims, nh, nz, npaths, paths, pivots, coef, cg_idx, cg_val, nthreads);         \
    }

FASTSO3_UVW_FACTORED(float, f32)
FASTSO3_UVW_FACTORED(double, f64)
}
