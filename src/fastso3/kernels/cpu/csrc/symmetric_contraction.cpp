// MACE's symmetric contraction on the factorised plan (see kernels/symmetric_contraction.py). Per node n and
// channel c, with x (N, D, C), per-node weights w (N, R, C) and out (N, S, C), channels innermost:
//   m_q      = x[i_q1] x[i_q2] .. x[i_qk]          (monomial q; index D is the constant 1)
//   acc[col] = sum_q P[q, col] m_q                 (P in CSR by monomial)
//   out[s]   = sum_{col: out(col) = s} w[rank(col)] acc[col]
// The backward gives gw[r] = sum_{col: rank(col) = r} g[out(col)] acc[col] and gx from the monomials'
// derivatives with gm_q = sum_col P[q, col] w[rank(col)] g[out(col)]. Each node is owned by one thread and
// computed in a fixed order, so results are bitwise the same for any thread count. Channels go in blocks of
// two 64-byte vectors (zero padded); per block the monomials are formed once (Q vectors, in L1/L2) and each
// column's projection accumulates in registers (the CSC form of P) before it is weighted into its output.
#include <algorithm>
#include <cstdint>
#include <vector>

namespace {

// A block of channels is NV explicit 64-byte vectors (32 floats or 16 doubles): arrays indexed in a loop would
// stay in memory, these stay in registers.
constexpr int NV = 2;

template <typename T>
struct Plan {
    int64_t d, q, cols, s, r, order;
    const int64_t* mono;  // (q, order), entries in [0, d]
    const int64_t* ptr;   // (q + 1): the projection in CSR by monomial ...
    const int64_t* col;   // (nnz)
    const T* val;         // (nnz)
    const int64_t* cptr;  // (cols + 1): ... and by column
    const int64_t* cmono; // (nnz)
    const T* cval;        // (nnz)
    const int64_t* rank;  // (cols)
    const int64_t* out;   // (cols)
};

template <typename T>
struct Block {
    typedef T V __attribute__((vector_size(64), aligned(sizeof(T))));
    static constexpr int64_t width = NV * 64 / sizeof(T);
    V v[NV];
};

// rows (count, width) <- src[i * c + c0 + j] for j < valid, 0 beyond.
template <typename T>
inline void load_rows(const T* src, int64_t count, int64_t c, int64_t c0, int64_t valid, Block<T>* rows) {
    for (int64_t i = 0; i < count; ++i) {
        T* dst = reinterpret_cast<T*>(rows[i].v);
        for (int64_t j = 0; j < Block<T>::width; ++j) dst[j] = j < valid ? src[i * c + c0 + j] : T(0);
    }
}

template <typename T>
inline void store_rows(const Block<T>* rows, int64_t count, int64_t c, int64_t c0, int64_t valid, T* dst) {
    for (int64_t i = 0; i < count; ++i) {
        const T* src = reinterpret_cast<const T*>(rows[i].v);
        for (int64_t j = 0; j < valid; ++j) dst[i * c + c0 + j] = src[j];
    }
}

// xs (d + 1 rows, the last the constant 1) and the block's monomials.
template <typename T>
void monomials(const Plan<T>& p, const T* x, int64_t c, int64_t c0, int64_t valid, Block<T>* xs, Block<T>* ms) {
    load_rows(x, p.d, c, c0, valid, xs);
    for (int i = 0; i < NV; ++i) xs[p.d].v[i] = typename Block<T>::V{} + T(1);
    for (int64_t q = 0; q < p.q; ++q) {
        const int64_t* ix = p.mono + q * p.order;
        Block<T> m = xs[ix[0]];
        for (int64_t k = 1; k < p.order; ++k)
            for (int i = 0; i < NV; ++i) m.v[i] *= xs[ix[k]].v[i];
        ms[q] = m;
    }
}

// acc = sum_q P[q, col] m_q, in registers.
template <typename T>
inline Block<T> column(const Plan<T>& p, const Block<T>* __restrict ms, int64_t col) {
    Block<T> acc = {};
    for (int64_t e = p.cptr[col]; e < p.cptr[col + 1]; ++e) {
        const T v = p.cval[e];
        const Block<T>& m = ms[p.cmono[e]];
        for (int i = 0; i < NV; ++i) acc.v[i] += v * m.v[i];
    }
    return acc;
}

// dst[into[col]] += src[by[col]] * (sum_q P[q, col] m_q) over the columns: the forward (into = output, by = rank)
// and the weight gradient (into = rank, by = output) are this with the roles of w and g swapped.
template <typename T>
inline void weighted_columns(const Plan<T>& p, const Block<T>* __restrict ms, const int64_t* by, const Block<T>* src,
                             const int64_t* into, Block<T>* dst) {
    for (int64_t col = 0; col < p.cols; ++col) {
        const Block<T> acc = column(p, ms, col);
        const Block<T>& factor = src[by[col]];
        Block<T>& o = dst[into[col]];
        for (int i = 0; i < NV; ++i) o.v[i] += factor.v[i] * acc.v[i];
    }
}

template <typename T>
void forward(const T* x, const T* w, T* out, int64_t n, int64_t c, const Plan<T>& p, int nthreads) {
    constexpr int64_t W = Block<T>::width;
#pragma omp parallel num_threads(nthreads)
    {
        std::vector<Block<T>> xs(p.d + 1), ms(p.q), ws(p.r), os(p.s);
#pragma omp for schedule(static)
        for (int64_t node = 0; node < n; ++node) {
            for (int64_t c0 = 0; c0 < c; c0 += W) {
                const int64_t valid = std::min(W, c - c0);
                monomials(p, x + node * p.d * c, c, c0, valid, xs.data(), ms.data());
                load_rows(w + node * p.r * c, p.r, c, c0, valid, ws.data());
                std::fill(os.begin(), os.end(), Block<T>{});
                weighted_columns(p, ms.data(), p.rank, ws.data(), p.out, os.data());
                store_rows(os.data(), p.s, c, c0, valid, out + node * p.s * c);
            }
        }
    }
}

// gx (N, D, C) and gw (N, R, C) from g (N, S, C); either output may be null (not needed).
template <typename T>
void backward(const T* g, const T* x, const T* w, T* gx, T* gw, int64_t n, int64_t c, const Plan<T>& p, int nthreads) {
    constexpr int64_t W = Block<T>::width;
#pragma omp parallel num_threads(nthreads)
    {
        std::vector<Block<T>> xs(p.d + 1), ms(p.q), ws(p.r), gs(p.s), gws(p.r), gxs(p.d + 1), ga(p.cols);
#pragma omp for schedule(static)
        for (int64_t node = 0; node < n; ++node) {
            for (int64_t c0 = 0; c0 < c; c0 += W) {
                const int64_t valid = std::min(W, c - c0);
                monomials(p, x + node * p.d * c, c, c0, valid, xs.data(), ms.data());
                load_rows(g + node * p.s * c, p.s, c, c0, valid, gs.data());
                if (gw) {
                    std::fill(gws.begin(), gws.end(), Block<T>{});
                    weighted_columns(p, ms.data(), p.out, gs.data(), p.rank, gws.data());
                    store_rows(gws.data(), p.r, c, c0, valid, gw + node * p.r * c);
                }
                if (!gx) continue;
                load_rows(w + node * p.r * c, p.r, c, c0, valid, ws.data());
                for (int64_t col = 0; col < p.cols; ++col)
                    for (int i = 0; i < NV; ++i) ga[col].v[i] = gs[p.out[col]].v[i] * ws[p.rank[col]].v[i];
                std::fill(gxs.begin(), gxs.end(), Block<T>{});
                for (int64_t q = 0; q < p.q; ++q) {
                    Block<T> gm = {};
                    for (int64_t e = p.ptr[q]; e < p.ptr[q + 1]; ++e) {
                        const T v = p.val[e];
                        const Block<T>& a = ga[p.col[e]];
                        for (int i = 0; i < NV; ++i) gm.v[i] += v * a.v[i];
                    }
                    // d m_q / d x[i_k] = the product of the other factors (row d, the constant, is dropped)
                    const int64_t* ix = p.mono + q * p.order;
                    if (p.order == 1) {
                        for (int i = 0; i < NV; ++i) gxs[ix[0]].v[i] += gm.v[i];
                    } else if (p.order == 2) {
                        const Block<T> a = xs[ix[0]], b = xs[ix[1]];
                        for (int i = 0; i < NV; ++i) gxs[ix[0]].v[i] += gm.v[i] * b.v[i];
                        for (int i = 0; i < NV; ++i) gxs[ix[1]].v[i] += gm.v[i] * a.v[i];
                    } else {
                        const Block<T> a = xs[ix[0]], b = xs[ix[1]], cc = xs[ix[2]];
                        for (int i = 0; i < NV; ++i) {
                            const auto gc = gm.v[i] * cc.v[i];
                            gxs[ix[0]].v[i] += gc * b.v[i];
                            gxs[ix[1]].v[i] += gc * a.v[i];
                            gxs[ix[2]].v[i] += gm.v[i] * a.v[i] * b.v[i];
                        }
                    }
                }
                store_rows(gxs.data(), p.d, c, c0, valid, gx + node * p.d * c);
            }
        }
    }
}

// The backward's derivative for cotangents hx (N, D, C) and hw (N, R, C; null when zero): with
// dm_q = d m_q / d x [hx] and dacc = P^T dm,
//   gg[s]   = sum_{col of s} (w[rank] dacc[col] + hw[rank] acc[col])
//   gwo[r]  = sum_{col of rank r} g[out] dacc[col]
//   gxo     = sum_q (P (w g))_q d dm_q / d x  +  sum_q (P (hw g))_q d m_q / d x.
template <typename T>
void double_backward(const T* g, const T* x, const T* w, const T* hx, const T* hw, T* gg, T* gxo, T* gwo, int64_t n,
                     int64_t c, const Plan<T>& p, int nthreads) {
    constexpr int64_t W = Block<T>::width;
#pragma omp parallel num_threads(nthreads)
    {
        std::vector<Block<T>> xs(p.d + 1), hs(p.d + 1), ms(p.q), dms(p.q), ws(p.r), hws(p.r), gs(p.s), ggs(p.s),
            gws(p.r), gxs(p.d + 1), ga(p.cols), gha(p.cols);
#pragma omp for schedule(static)
        for (int64_t node = 0; node < n; ++node) {
            for (int64_t c0 = 0; c0 < c; c0 += W) {
                const int64_t valid = std::min(W, c - c0);
                monomials(p, x + node * p.d * c, c, c0, valid, xs.data(), ms.data());
                load_rows(hx + node * p.d * c, p.d, c, c0, valid, hs.data());
                hs[p.d] = Block<T>{};  // the constant's tangent
                load_rows(w + node * p.r * c, p.r, c, c0, valid, ws.data());
                if (hw) load_rows(hw + node * p.r * c, p.r, c, c0, valid, hws.data());
                load_rows(g + node * p.s * c, p.s, c, c0, valid, gs.data());
                for (int64_t q = 0; q < p.q; ++q) {  // dm_q, by positions
                    const int64_t* ix = p.mono + q * p.order;
                    Block<T> dm = {};
                    for (int64_t k = 0; k < p.order; ++k) {
                        Block<T> t = hs[ix[k]];
                        for (int64_t l = 0; l < p.order; ++l)
                            if (l != k)
                                for (int i = 0; i < NV; ++i) t.v[i] *= xs[ix[l]].v[i];
                        for (int i = 0; i < NV; ++i) dm.v[i] += t.v[i];
                    }
                    dms[q] = dm;
                }
                std::fill(ggs.begin(), ggs.end(), Block<T>{});
                std::fill(gws.begin(), gws.end(), Block<T>{});
                for (int64_t col = 0; col < p.cols; ++col) {
                    const Block<T> dacc = column(p, dms.data(), col);
                    const Block<T>& wr = ws[p.rank[col]];
                    const Block<T>& gr = gs[p.out[col]];
                    Block<T>& o = ggs[p.out[col]];
                    Block<T>& ow = gws[p.rank[col]];
                    for (int i = 0; i < NV; ++i) {
                        o.v[i] += wr.v[i] * dacc.v[i];
                        ow.v[i] += gr.v[i] * dacc.v[i];
                        ga[col].v[i] = wr.v[i] * gr.v[i];
                    }
                    if (hw) {
                        const Block<T> acc = column(p, ms.data(), col);
                        const Block<T>& hr = hws[p.rank[col]];
                        for (int i = 0; i < NV; ++i) {
                            o.v[i] += hr.v[i] * acc.v[i];
                            gha[col].v[i] = hr.v[i] * gr.v[i];
                        }
                    }
                }
                store_rows(ggs.data(), p.s, c, c0, valid, gg + node * p.s * c);
                store_rows(gws.data(), p.r, c, c0, valid, gwo + node * p.r * c);
                std::fill(gxs.begin(), gxs.end(), Block<T>{});
                for (int64_t q = 0; q < p.q; ++q) {
                    Block<T> gm = {}, gm1 = {};
                    for (int64_t e = p.ptr[q]; e < p.ptr[q + 1]; ++e) {
                        const T v = p.val[e];
                        for (int i = 0; i < NV; ++i) gm.v[i] += v * ga[p.col[e]].v[i];
                        if (hw)
                            for (int i = 0; i < NV; ++i) gm1.v[i] += v * gha[p.col[e]].v[i];
                    }
                    const int64_t* ix = p.mono + q * p.order;
                    for (int64_t k = 0; k < p.order; ++k) {
                        // d dm_q / d x[i_k] = sum_{j != k} hx[i_j] prod_{l != k, j} x[i_l]; d m_q / d x[i_k] (hw part)
                        Block<T> t = {};
                        for (int64_t j = 0; j < p.order; ++j) {
                            if (j == k) continue;
                            Block<T> u = hs[ix[j]];
                            for (int64_t l = 0; l < p.order; ++l)
                                if (l != k && l != j)
                                    for (int i = 0; i < NV; ++i) u.v[i] *= xs[ix[l]].v[i];
                            for (int i = 0; i < NV; ++i) t.v[i] += u.v[i];
                        }
                        for (int i = 0; i < NV; ++i) gxs[ix[k]].v[i] += gm.v[i] * t.v[i];
                        if (hw) {
                            Block<T> u = gm1;
                            for (int64_t l = 0; l < p.order; ++l)
                                if (l != k)
                                    for (int i = 0; i < NV; ++i) u.v[i] *= xs[ix[l]].v[i];
                            for (int i = 0; i < NV; ++i) gxs[ix[k]].v[i] += u.v[i];
                        }
                    }
                }
                store_rows(gxs.data(), p.d, c, c0, valid, gxo + node * p.d * c);
            }
        }
    }
}

}  // namespace

#define FASTSO3_SYMCON_DOUBLE(T, SUFFIX)                                                                        \
    extern "C" void fastso3_symcon_double_backward_##SUFFIX(                                                    \
        const T* g, const T* x, const T* w, const T* hx, const T* hw, T* gg, T* gx, T* gw, int64_t n, int64_t c,  \
        int64_t d, int64_t q, int64_t cols, int64_t s, int64_t r, int64_t order, const int64_t* mono,           \
        const int64_t* ptr, const int64_t* col, const T* val, const int64_t* cptr, const int64_t* cmono,        \
        const T* cval, const int64_t* rank, const int64_t* out_of, int nthreads) {                              \
        double_backward<T>(g, x, w, hx, hw, gg, gx, gw, n, c,                                                   \
                           Plan<T>{d, q, cols, s, r, order, mono, ptr, col, val, cptr, cmono, cval, rank, out_of},  \
                           nthreads);                                                                           \
    }

#define FASTSO3_SYMCON(T, SUFFIX)                                                                               \
    extern "C" void fastso3_symcon_forward_##SUFFIX(const T* x, const T* w, T* out, int64_t n, int64_t c,       \
                                                    int64_t d, int64_t q, int64_t cols, int64_t s, int64_t r,   \
                                                    int64_t order, const int64_t* mono, const int64_t* ptr,     \
                                                    const int64_t* col, const T* val, const int64_t* cptr,       \
                                                    const int64_t* cmono, const T* cval, const int64_t* rank,   \
                                                    const int64_t* out_of, int nthreads) {                      \
        forward<T>(x, w, out, n, c, Plan<T>{d, q, cols, s, r, order, mono, ptr, col, val, cptr, cmono, cval, rank,  \
                                            out_of}, nthreads);                                                 \
    }                                                                                                           \
    extern "C" void fastso3_symcon_backward_##SUFFIX(const T* g, const T* x, const T* w, T* gx, T* gw, int64_t n, \
                                                     int64_t c, int64_t d, int64_t q, int64_t cols, int64_t s,  \
                                                     int64_t r, int64_t order, const int64_t* mono,             \
                                                     const int64_t* ptr, const int64_t* col, const T* val,      \
                                                     const int64_t* cptr, const int64_t* cmono, const T* cval,  \
                                                     const int64_t* rank, const int64_t* out_of, int nthreads) { \
        backward<T>(g, x, w, gx, gw, n, c, Plan<T>{d, q, cols, s, r, order, mono, ptr, col, val, cptr, cmono, cval, \
                                                   rank, out_of}, nthreads);                                    \
    }

FASTSO3_SYMCON_DOUBLE(float, f32)
FASTSO3_SYMCON(float, f32)
FASTSO3_SYMCON_DOUBLE(double, f64)
FASTSO3_SYMCON(double, f64)
