// Fused channel-wise tensor-product convolution: the table contractions of fastso3_cpu.cpp (cw_channeled,
// cw_scalar) over graph edges, with every operand either per edge or gathered through an index array, and
// the output either per edge or summed over receiver-sorted CSR segments:
//   channeled output: out[r, o, u] = sum_{e in seg r} sum_k c[k] a[ga(e), ia_k, u] b[gb(e), ib_k, u] s[gs(e), is_k]
//   scalar output:    out[r, o]    = sum_{e in seg r} sum_k c[k] sum_u a[ga(e), ia_k, u] b[gb(e), ib_k, u] d[gd(e), id_k, u]
// where g(e) = index[e], or e for a null index, and segment r holds edges perm[ptr[r] .. ptr[r+1]). A null ptr
// means per-edge output rows, visited in the order perm if given (e.g. sorted by receiver, so consecutive
// edges reuse the gathered node rows from cache). Channeled tensors are channels-innermost (rows, C) per
// sample. Each output row is owned by one thread and its edges are added in a fixed order, so results are
// bitwise reproducible for any thread count; nothing per edge is materialised.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

struct Operand {
    const void* data;
    int64_t stride;        // values per sample
    const int64_t* index;  // sample of edge e, or null for sample e
    template <typename T>
    inline const T* at(int64_t e) const {
        return static_cast<const T*>(data) + (index ? index[e] : e) * stride;
    }
};

struct Entries {
    int64_t nnz;
    const int64_t *io, *ia, *ib, *ic;
};

// lo[io, u0:u0+width] += sum_k c_k s[ic_k] a[ia_k, u0:] b[ib_k, u0:]. The entries are sorted by output row,
// then by b row: a run with one output accumulates in registers (NV explicit 64-byte vectors for full chunks;
// arrays indexed in a loop would stay in memory), and within it a run with one b row multiplies b only once:
// acc += b[ib] * sum_k c_k s[ic_k] a[ia_k], one load per entry instead of two. A plain loop does the tail.
template <typename T, int NV>
void channeled_chunk(T* __restrict lo, const T* __restrict pa, const T* __restrict pb, const T* __restrict ps,
                     const T* __restrict coef, Entries t, int64_t nc, int64_t u0, int64_t width) {
    typedef T V __attribute__((vector_size(64), aligned(sizeof(T))));
    for (int64_t k = 0; k < t.nnz;) {
        const int64_t o = t.io[k];
        if constexpr (NV > 0) {
            V acc[NV] = {};
            while (k < t.nnz && t.io[k] == o) {
                const int64_t rb = t.ib[k];
                V part[NV] = {};
                for (; k < t.nnz && t.io[k] == o && t.ib[k] == rb; ++k) {
                    const T c = coef[k] * ps[t.ic[k]];
                    const V* x = reinterpret_cast<const V*>(pa + t.ia[k] * nc + u0);
#pragma GCC unroll 8
                    for (int i = 0; i < NV; ++i) part[i] += c * x[i];
                }
                const V* y = reinterpret_cast<const V*>(pb + rb * nc + u0);
#pragma GCC unroll 8
                for (int i = 0; i < NV; ++i) acc[i] += part[i] * y[i];
            }
            V* d = reinterpret_cast<V*>(lo + o * nc + u0);
#pragma GCC unroll 8
            for (int i = 0; i < NV; ++i) d[i] += acc[i];
        } else {
            T* __restrict d = lo + o * nc + u0;
            for (; k < t.nnz && t.io[k] == o; ++k) {
                const T c = coef[k] * ps[t.ic[k]];
                const T* __restrict x = pa + t.ia[k] * nc + u0;
                const T* __restrict y = pb + t.ib[k] * nc + u0;
#pragma omp simd
                for (int64_t u = 0; u < width; ++u) d[u] += c * x[u] * y[u];
            }
        }
    }
}

template <typename T>
void conv_channeled(Operand a, Operand b, Operand s, T* __restrict out, int64_t nout, int64_t so, const int64_t* ptr,
                    const int64_t* perm, int64_t nc, Entries t, const T* coef, int nthreads) {
    constexpr int64_t W = 256 / sizeof(T);  // channels per full chunk: 4 vectors of 64 bytes
#pragma omp parallel for schedule(dynamic, 8) num_threads(nthreads) if (nthreads > 1 && nout > 16)
    for (int64_t r = 0; r < nout; ++r) {
        const int64_t j0 = ptr ? ptr[r] : r, j1 = ptr ? ptr[r + 1] : r + 1;
        T* __restrict lo = out + (ptr || !perm ? r : perm[r]) * so;
        std::memset(lo, 0, sizeof(T) * so);
        for (int64_t j = j0; j < j1; ++j) {
            const int64_t e = perm ? perm[j] : j;
            const T *pa = a.at<T>(e), *pb = b.at<T>(e), *ps = s.at<T>(e);
            int64_t u0 = 0;
            for (; u0 + W <= nc; u0 += W) channeled_chunk<T, 4>(lo, pa, pb, ps, coef, t, nc, u0, W);
            if (u0 < nc) channeled_chunk<T, 0>(lo, pa, pb, ps, coef, t, nc, u0, nc - u0);
        }
    }
}

// Scalar output: entries sorted by (b row, d row), so a run shares t = b[ib] * d[id], computed once; each entry
// then adds c a[ia] * t into a vector accumulator of its output (in L1), reduced across lanes once per edge.
template <typename T>
void conv_scalar(Operand a, Operand b, Operand d, T* __restrict out, int64_t nout, int64_t so, const int64_t* ptr,
                 const int64_t* perm, int64_t nc, Entries t, const T* coef, int nthreads) {
    typedef T V __attribute__((vector_size(64), aligned(sizeof(T))));
    constexpr int NV = 4, L = 64 / sizeof(T), W = NV * L;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nout > 16)
    {
        std::vector<T> buffer(so * W);  // (outputs, NV vectors)
        V* acc = reinterpret_cast<V*>(buffer.data());
#pragma omp for schedule(dynamic, 8)
        for (int64_t r = 0; r < nout; ++r) {
            const int64_t j0 = ptr ? ptr[r] : r, j1 = ptr ? ptr[r + 1] : r + 1;
            T* __restrict o = out + (ptr || !perm ? r : perm[r]) * so;
            std::memset(o, 0, sizeof(T) * so);
            for (int64_t j = j0; j < j1; ++j) {
                const int64_t e = perm ? perm[j] : j;
                const T *pa = a.at<T>(e), *pb = b.at<T>(e), *pd = d.at<T>(e);
                std::fill(buffer.begin(), buffer.end(), T(0));
                int64_t u0 = 0;
                for (; u0 + W <= nc; u0 += W) {
                    for (int64_t k = 0; k < t.nnz;) {
                        const int64_t rb = t.ib[k], rd = t.ic[k];
                        const V* y = reinterpret_cast<const V*>(pb + rb * nc + u0);
                        const V* z = reinterpret_cast<const V*>(pd + rd * nc + u0);
                        V yz[NV];
#pragma GCC unroll 8
                        for (int i = 0; i < NV; ++i) yz[i] = y[i] * z[i];
                        for (; k < t.nnz && t.ib[k] == rb && t.ic[k] == rd; ++k) {
                            const V* x = reinterpret_cast<const V*>(pa + t.ia[k] * nc + u0);
                            V* q = acc + t.io[k] * NV;
                            const T c = coef[k];
#pragma GCC unroll 8
                            for (int i = 0; i < NV; ++i) q[i] += c * x[i] * yz[i];
                        }
                    }
                }
                for (int64_t k = 0; u0 < nc && k < t.nnz; ++k) {  // channels past the last full chunk
                    const T* __restrict x = pa + t.ia[k] * nc;
                    const T* __restrict y = pb + t.ib[k] * nc;
                    const T* __restrict z = pd + t.ic[k] * nc;
                    T dot = T(0);
                    for (int64_t u = u0; u < nc; ++u) dot += x[u] * y[u] * z[u];
                    o[t.io[k]] += coef[k] * dot;
                }
                for (int64_t q = 0; q < so; ++q) {
                    T sum = T(0);
                    for (int i = 0; i < NV; ++i)
                        for (int l = 0; l < L; ++l) sum += acc[q * NV + i][l];
                    o[q] += sum;
                }
            }
        }
    }
}

}  // namespace

extern "C" {

#define FASTSO3_CONV_INSTANTIATE(T, SUFFIX)                                                                       \
    void fastso3_conv_channeled_##SUFFIX(const T* a, int64_t sa, const int64_t* ga, const T* b, int64_t sb,        \
                                         const int64_t* gb, const T* s, int64_t ss, const int64_t* gs, T* out,     \
                                         int64_t nout, int64_t so, const int64_t* ptr, const int64_t* perm,        \
                                         int64_t nc, int64_t nnz, const int64_t* io, const int64_t* ia,            \
                                         const int64_t* ib, const int64_t* ic, const T* coef, int nthreads) {      \
        conv_channeled<T>(Operand{a, sa, ga}, Operand{b, sb, gb}, Operand{s, ss, gs}, out, nout, so, ptr, perm,   \
                          nc, Entries{nnz, io, ia, ib, ic}, coef, nthreads);                                      \
    }                                                                                                             \
    void fastso3_conv_scalar_##SUFFIX(const T* a, int64_t sa, const int64_t* ga, const T* b, int64_t sb,           \
                                      const int64_t* gb, const T* d, int64_t sd, const int64_t* gd, T* out,        \
                                      int64_t nout, int64_t so, const int64_t* ptr, const int64_t* perm,           \
                                      int64_t nc, int64_t nnz, const int64_t* io, const int64_t* ia,               \
                                      const int64_t* ib, const int64_t* id, const T* coef, int nthreads) {         \
        conv_scalar<T>(Operand{a, sa, ga}, Operand{b, sb, gb}, Operand{d, sd, gd}, out, nout, so, ptr, perm, nc,  \
                       Entries{nnz, io, ia, ib, id}, coef, nthreads);                                             \
    }

FASTSO3_CONV_INSTANTIATE(float, f32)
FASTSO3_CONV_INSTANTIATE(double, f64)
}
