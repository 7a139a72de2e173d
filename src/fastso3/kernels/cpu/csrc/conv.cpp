// Fused channel-wise tensor-product convolution: the table contractions of fastso3_cpu.cpp (cw_channeled,
// cw_scalar) over graph edges, with every operand either per edge or gathered through an index array, and
// the output either per edge or summed over receiver-sorted CSR segments:
//   channeled output: out[r, o, u] = sum_{e in seg r} sum_k c[k] a[ga(e), ia_k, u] b[gb(e), ib_k, u] s[gs(e), is_k]
//   scalar output:    out[r, o]    = sum_{e in seg r} sum_k c[k] sum_u a[ga(e), ia_k, u] b[gb(e), ib_k, u] d[gd(e), id_k, u]
// where g(e) = index[e], or e for a null index, and segment r holds edges perm[ptr[r] .. ptr[r+1]). A null ptr
// means per-edge output rows, visited in the order perm if given (e.g. sorted by receiver, so consecutive
// edges reuse the gathered node rows from cache). Channeled operands are channels-innermost (rows, C) per
// sample; a channeled output may be scattered into another layout (see conv_channeled). Each output row is
// owned by one thread and its edges are added in a fixed order, so results are bitwise reproducible for any
// thread count; nothing per edge is materialised. (Software prefetch of the next edges' rows measured 1.3-2x
// slower, probably by evicting the output row and the reused node rows from L1.)
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

#include "channelwise_entries.h"

namespace {

using namespace fastso3_cw;

struct Operand {
    const void* data;
    int64_t stride;        // values per sample
    const int64_t* index;  // sample of edge e, or null for sample e
    template <typename T>
    inline const T* at(int64_t e) const {
        return static_cast<const T*>(data) + (index ? index[e] : e) * stride;
    }
};

// One edge's contraction adds into its output row: the entry loops of channelwise_entries.h (nested runs,
// channels in registers) on the edge's gathered rows, which are channels-innermost and back to back. With
// `place` (so values: position in the output row of channels-innermost value i, e.g. e3nn's mul_ir layout) a
// row is summed in scratch and scattered once it is complete, so the caller needs no reordering pass.
// The edges go in blocks of kLanes (a segment's edges in order, or kLanes per-edge output rows), whose run
// coefficients are formed together (Runs::coefficients); within a block, up to 4 whole vectors of channels, G
// edges go through the entry loops together (channeled_rows_group): their sum formed in registers (a fixed
// order, so still reproducible), or G per-edge output rows at once.
template <typename T, int G>
void conv_channeled_groups(Operand a, Operand b, Operand s, T* __restrict out, int64_t nout, int64_t so,
                           const int64_t* ptr, const int64_t* perm, const int64_t* place, int64_t nc, Entries t,
                           const T* coef, int nthreads) {
    constexpr int W = kLanes<T>;
    static_assert(W % G == 0, "a block holds whole groups");
    const Runs runs(t);
    const bool grouped_rows = G > 1 && !ptr && !place;  // per-edge outputs, G rows at a time
    const int64_t step = ptr ? 1 : W, tasks = (nout + step - 1) / step;  // a segment, or W per-edge rows
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nout > 16)
    {
        std::vector<T> ca(runs.a.size() * W), st(runs.ns * W), scratch(place ? so : 0);
        Flat<T> lo[G], la[G], lb[G];
        const T* cg[G];
        int64_t edges[W];
        // the block of the n edges edges[0..n): their run coefficients; slot g of a group <- its edge q + g
        auto block = [&](int n) {
            const T* srow[W];
            for (int q = 0; q < n; ++q) srow[q] = s.at<T>(edges[q]);
            runs.coefficients(ca.data(), coef, srow, n, t.ic, st.data());
        };
        auto edge = [&](int g, int q) {
            cg[g] = ca.data() + q;
            la[g] = Flat<T>{const_cast<T*>(a.at<T>(edges[q])), nc};
            lb[g] = Flat<T>{const_cast<T*>(b.at<T>(edges[q])), nc};
        };
#pragma omp for schedule(dynamic, 8)
        for (int64_t task = 0; task < tasks; ++task) {
            if (!ptr) {  // per-edge output rows r0 .. r0 + n: row r is edge perm[r] (or r)
                const int64_t r0 = task * W;
                const int n = static_cast<int>(std::min<int64_t>(W, nout - r0));
                for (int q = 0; q < n; ++q) edges[q] = perm ? perm[r0 + q] : r0 + q;
                block(n);
                int q = 0;
                if (grouped_rows)
                    for (; q + G <= n; q += G) {
                        for (int g = 0; g < G; ++g) {
                            lo[g] = Flat<T>{out + edges[q + g] * so, nc};
                            std::memset(lo[g].p, 0, sizeof(T) * so);
                            edge(g, q + g);
                        }
                        channeled_rows_group<T, G>(lo, la, lb, cg, runs, nc, false);
                    }
                for (; q < n; ++q) {
                    T* __restrict row = out + edges[q] * so;
                    T* __restrict dst = place ? scratch.data() : row;
                    std::memset(dst, 0, sizeof(T) * so);
                    edge(0, q);
                    channeled_rows<T, true>(Flat<T>{dst, nc}, la[0], lb[0], cg[0], runs, nc);
                    if (place)
                        for (int64_t i = 0; i < so; ++i) row[place[i]] = dst[i];
                }
                continue;
            }
            const int64_t r = task;  // segment r: its edges summed into row r in their order
            T* __restrict row = out + r * so;
            T* __restrict dst = place ? scratch.data() : row;
            std::memset(dst, 0, sizeof(T) * so);
            lo[0] = Flat<T>{dst, nc};
            for (int64_t j = ptr[r]; j < ptr[r + 1]; j += W) {
                const int n = static_cast<int>(std::min<int64_t>(W, ptr[r + 1] - j));
                for (int q = 0; q < n; ++q) edges[q] = perm ? perm[j + q] : j + q;
                block(n);
                int q = 0;
                if constexpr (G > 1)
                    for (; q + G <= n; q += G) {
                        for (int g = 0; g < G; ++g) edge(g, q + g);
                        channeled_rows_group<T, G>(lo, la, lb, cg, runs, nc, true);
                    }
                for (; q < n; ++q) {
                    edge(0, q);
                    channeled_rows<T, true>(lo[0], la[0], lb[0], cg[0], runs, nc);
                }
            }
            if (place)
                for (int64_t i = 0; i < so; ++i) row[place[i]] = dst[i];
        }
    }
}

template <typename T>
void conv_channeled(Operand a, Operand b, Operand s, T* __restrict out, int64_t nout, int64_t so, const int64_t* ptr,
                    const int64_t* perm, const int64_t* place, int64_t nc, Entries t, const T* coef, int nthreads) {
    with_group_size<T>(nc, [&](auto g) {
        conv_channeled_groups<T, g.value>(a, b, s, out, nout, so, ptr, perm, place, nc, t, coef, nthreads);
    });
}

// As conv_channeled_groups: G edges at a time up to 4 vectors of channels (scalar_group), a segment's edges
// summed into its row, or G per-edge output rows at once.
template <typename T, int G>
void conv_scalar_groups(Operand a, Operand b, Operand d, T* __restrict out, int64_t nout, int64_t so,
                        const int64_t* ptr, const int64_t* perm, int64_t nc, Entries t, const T* coef, int nthreads) {
    const bool grouped_rows = G > 1 && !ptr;
    const int64_t step = grouped_rows ? G : 1, tasks = (nout + step - 1) / step;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nout > 16)
    {
        std::vector<T> acc(G * so * 64 / sizeof(T));  // G x so vectors
        auto* vacc = reinterpret_cast<typename Simd<T>::V*>(acc.data());
        Flat<T> la[G], lb[G], ld[G];
        T* o[G];
        auto edge = [&](int g, int64_t e) {
            la[g] = Flat<T>{const_cast<T*>(a.at<T>(e)), nc};
            lb[g] = Flat<T>{const_cast<T*>(b.at<T>(e)), nc};
            ld[g] = Flat<T>{const_cast<T*>(d.at<T>(e)), nc};
        };
#pragma omp for schedule(dynamic, 8)
        for (int64_t task = 0; task < tasks; ++task) {
            if (grouped_rows && task * G + G <= nout) {
                for (int g = 0; g < G; ++g) {
                    const int64_t r = task * G + g;
                    o[g] = out + (perm ? perm[r] : r) * so;
                    std::memset(o[g], 0, sizeof(T) * so);
                    edge(g, perm ? perm[r] : r);
                }
                scalar_group<T, G>(la, lb, ld, o, so, nc, t, coef, vacc, false);
                continue;
            }
            for (int64_t r = task * step; r < std::min(nout, (task + 1) * step); ++r) {
                const int64_t j0 = ptr ? ptr[r] : r, j1 = ptr ? ptr[r + 1] : r + 1;
                o[0] = out + (ptr || !perm ? r : perm[r]) * so;
                std::memset(o[0], 0, sizeof(T) * so);
                int64_t j = j0;
                if constexpr (G > 1)
                    for (; j + G <= j1; j += G) {
                        for (int g = 0; g < G; ++g) edge(g, perm ? perm[j + g] : j + g);
                        scalar_group<T, G>(la, lb, ld, o, so, nc, t, coef, vacc, true);
                    }
                for (; j < j1; ++j) {
                    edge(0, perm ? perm[j] : j);
                    scalar_group<T, 1>(la, lb, ld, o, so, nc, t, coef, vacc, false);
                }
            }
        }
    }
}

template <typename T>
void conv_scalar(Operand a, Operand b, Operand d, T* __restrict out, int64_t nout, int64_t so, const int64_t* ptr,
                 const int64_t* perm, int64_t nc, Entries t, const T* coef, int nthreads) {
    with_group_size<T>(nc, [&](auto g) {
        conv_scalar_groups<T, g.value>(a, b, d, out, nout, so, ptr, perm, nc, t, coef, nthreads);
    });
}

}  // namespace

extern "C" {

#define FASTSO3_CONV_INSTANTIATE(T, SUFFIX)                                                                       \
    void fastso3_conv_channeled_##SUFFIX(const T* a, int64_t sa, const int64_t* ga, const T* b, int64_t sb,        \
                                         const int64_t* gb, const T* s, int64_t ss, const int64_t* gs, T* out,     \
                                         int64_t nout, int64_t so, const int64_t* ptr, const int64_t* perm,        \
                                         const int64_t* place, int64_t nc, int64_t nnz, const int64_t* io,         \
                                         const int64_t* ia, const int64_t* ib, const int64_t* ic, const T* coef,   \
                                         int nthreads) {                                                          \
        conv_channeled<T>(Operand{a, sa, ga}, Operand{b, sb, gb}, Operand{s, ss, gs}, out, nout, so, ptr, perm,   \
                          place, nc, Entries{nnz, io, ia, ib, ic}, coef, nthreads);                               \
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
