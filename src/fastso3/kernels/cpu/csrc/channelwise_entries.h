// The entry loops shared by the per-sample channel-wise kernels (channelwise.cpp) and the fused convolution
// (conv.cpp): one sample's (or one edge's) contraction over a sorted table of entries, C channels, with every
// channeled operand given as channels-innermost rows. A row accessor R maps a row number to its channels
// (`row[r]`): an array of row pointers, or Flat for rows stored back to back.
//   channeled: lo[o, u] (+)= sum_k c_k s[is_k] a[ia_k, u] b[ib_k, u]   (entries sorted by o, then b row, a row)
//   scalar:    o[k_o]   += sum_k c_k sum_u a[ia_k, u] b[ib_k, u] d[id_k, u]   (sorted by b row, d row, a row)
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace fastso3_cw {

// 64-byte vectors of the compute loops (an alias template would drop the vector attribute).
template <typename T>
struct Simd;
template <>
struct Simd<float> {
    typedef float V __attribute__((vector_size(64), aligned(4)));
};
template <>
struct Simd<double> {
    typedef double V __attribute__((vector_size(64), aligned(8)));
};

struct Entries {
    int64_t nnz;
    const int64_t *io, *ia, *ib, *ic;
};

// Rows stored back to back, nc channels each.
template <typename T>
struct Flat {
    T* p;
    int64_t nc;
    T* operator[](int64_t r) const { return p + r * nc; }
};

// Samples whose run coefficients are formed together, one per vector lane (Runs::coefficients).
template <typename T>
constexpr int kLanes = 64 / sizeof(T);

// The sorted entries as nested runs, built once per call: output rows (each with its b runs), b runs
// (each with its a runs), a runs (each a span of entries that differ only in s). Per sample, each a run's
// coefficient sum_k c_k s[is_k] is formed once; the channel loops then only count.
struct Runs {
    std::vector<int64_t> out, out_end, b, b_end, a, a_end;  // row, end of its children (exclusive)
    int64_t ns = 0;                                         // values of s the entries read: 1 + max is_k
    explicit Runs(Entries t) {
        for (int64_t k = 0; k < t.nnz; ++k) ns = std::max(ns, t.ic[k] + 1);
        for (int64_t k = 0; k < t.nnz; ++k) {
            const bool new_out = k == 0 || t.io[k] != t.io[k - 1];
            const bool new_b = new_out || t.ib[k] != t.ib[k - 1];
            if (new_out) out.push_back(t.io[k]), out_end.push_back(0);
            if (new_b) b.push_back(t.ib[k]), b_end.push_back(0);
            if (new_b || t.ia[k] != t.ia[k - 1]) a.push_back(t.ia[k]), a_end.push_back(0);
            a_end.back() = k + 1;
            b_end.back() = static_cast<int64_t>(a.size());
            out_end.back() = static_cast<int64_t>(b.size());
        }
    }
    // ca[i kLanes + q] = sum over a run i of c_k s_q[is_k] for the n <= kLanes samples (or edges) q with rows
    // s[q] (lanes q >= n: zero), lane-major: one vector FMA per entry for all of them. At C = 32 the scalar
    // sum, one sample at a time, was a third of the channeled contraction. st: ns kLanes values of scratch.
    template <typename T>
    void coefficients(T* __restrict ca, const T* __restrict coef, const T* const* s, int n, const int64_t* is,
                      T* __restrict st) const {
        using V = typename Simd<T>::V;
        constexpr int W = kLanes<T>;
        for (int64_t j = 0; j < ns; ++j)
            for (int q = 0; q < W; ++q) st[j * W + q] = q < n ? s[q][j] : T(0);
        const V* sv = reinterpret_cast<const V*>(st);
        V* cv = reinterpret_cast<V*>(ca);
        for (size_t i = 0, k = 0; i < a.size(); ++i) {
            V c = {};
            for (; k < static_cast<size_t>(a_end[i]); ++k) c += coef[k] * sv[is[k]];
            cv[i] = c;
        }
    }
};

// Output rows, channels [u0, u0 + NV L) in registers (NV > 0), or [u0, u0 + width) in memory (NV == 0);
// stored (Add false) or added (Add true) into lo. ca: the sample's lane of a Runs::coefficients block (its run
// coefficients kLanes apart).
template <typename T, int NV, bool Add, typename RO, typename RA, typename RB>
void channeled_chunk(const RO& lo, const RA& la, const RB& lb, const T* __restrict ca, const Runs& r, int64_t u0,
                     int64_t width) {
    using V = typename Simd<T>::V;
    int64_t ib = 0, ia = 0;
    for (size_t io = 0; io < r.out.size(); ++io) {
        if constexpr (NV > 0) {
            V acc[NV] = {};
            for (; ib < r.out_end[io]; ++ib) {
                V part[NV] = {};
                for (; ia < r.b_end[ib]; ++ia) {
                    const V* x = reinterpret_cast<const V*>(la[r.a[ia]] + u0);
                    const T c = ca[ia * kLanes<T>];
#pragma GCC unroll 8
                    for (int i = 0; i < NV; ++i) part[i] += c * x[i];
                }
                const V* y = reinterpret_cast<const V*>(lb[r.b[ib]] + u0);
#pragma GCC unroll 8
                for (int i = 0; i < NV; ++i) acc[i] += part[i] * y[i];
            }
            V* d = reinterpret_cast<V*>(lo[r.out[io]] + u0);
#pragma GCC unroll 8
            for (int i = 0; i < NV; ++i) d[i] = Add ? d[i] + acc[i] : acc[i];
        } else {
            T* __restrict d = lo[r.out[io]] + u0;
            if (!Add)
                for (int64_t u = 0; u < width; ++u) d[u] = T(0);
            for (; ib < r.out_end[io]; ++ib)
                for (const T* __restrict y = lb[r.b[ib]] + u0; ia < r.b_end[ib]; ++ia) {
                    const T* __restrict x = la[r.a[ia]] + u0;
                    const T c = ca[ia * kLanes<T>];
#pragma omp simd
                    for (int64_t u = 0; u < width; ++u) d[u] += c * x[u] * y[u];
                }
        }
    }
}

// All nc channels: chunks of 8, 4, 2, then 1 vectors in registers, then a plain loop for the rest.
template <typename T, bool Add, typename RO, typename RA, typename RB>
void channeled_rows(const RO& lo, const RA& la, const RB& lb, const T* ca, const Runs& runs, int64_t nc) {
    constexpr int64_t L = 64 / sizeof(T);  // channels per vector
    int64_t u0 = 0;
    for (; u0 + 8 * L <= nc; u0 += 8 * L) channeled_chunk<T, 8, Add>(lo, la, lb, ca, runs, u0, 8 * L);
    for (; u0 + 4 * L <= nc; u0 += 4 * L) channeled_chunk<T, 4, Add>(lo, la, lb, ca, runs, u0, 4 * L);
    for (; u0 + 2 * L <= nc; u0 += 2 * L) channeled_chunk<T, 2, Add>(lo, la, lb, ca, runs, u0, 2 * L);
    for (; u0 + L <= nc; u0 += L) channeled_chunk<T, 1, Add>(lo, la, lb, ca, runs, u0, L);
    if (u0 < nc) channeled_chunk<T, 0, Add>(lo, la, lb, ca, runs, u0, nc - u0);
}

// G samples at once (e.g. G edges of one receiver's segment), channels [u0, u0 + NV L), added into their
// output rows: lo[0] for all when `shared` (their sum is formed in registers), else lo[g] for sample g. The
// run structure, its data-dependent branches and the row lookups are walked once for the G samples, and the
// G x NV independent accumulator chains hide the FMA latency: at C = 32 (NV = 2) one sample's two chains
// left the FMA units mostly idle.
template <typename T, int G, int NV>
void channeled_group(const Flat<T>* lo, const Flat<T>* la, const Flat<T>* lb, const T* const* ca, const Runs& r,
                     int64_t u0, bool shared) {
    using V = typename Simd<T>::V;
    int64_t ib = 0, ia = 0;
    for (size_t io = 0; io < r.out.size(); ++io) {
        V acc[G][NV] = {};
        for (; ib < r.out_end[io]; ++ib) {
            V part[G][NV] = {};
            for (; ia < r.b_end[ib]; ++ia) {
                const int64_t row = r.a[ia];
#pragma GCC unroll 4
                for (int g = 0; g < G; ++g) {
                    const V* x = reinterpret_cast<const V*>(la[g][row] + u0);
                    const T c = ca[g][ia * kLanes<T>];
#pragma GCC unroll 8
                    for (int i = 0; i < NV; ++i) part[g][i] += c * x[i];
                }
            }
            const int64_t row = r.b[ib];
#pragma GCC unroll 4
            for (int g = 0; g < G; ++g) {
                const V* y = reinterpret_cast<const V*>(lb[g][row] + u0);
#pragma GCC unroll 8
                for (int i = 0; i < NV; ++i) acc[g][i] += part[g][i] * y[i];
            }
        }
        const int64_t row = r.out[io];
        if (shared) {
            V* d = reinterpret_cast<V*>(lo[0][row] + u0);
#pragma GCC unroll 8
            for (int i = 0; i < NV; ++i) {
                V sum = acc[0][i];
#pragma GCC unroll 4
                for (int g = 1; g < G; ++g) sum += acc[g][i];
                d[i] += sum;
            }
        } else {
#pragma GCC unroll 4
            for (int g = 0; g < G; ++g) {
                V* d = reinterpret_cast<V*>(lo[g][row] + u0);
#pragma GCC unroll 8
                for (int i = 0; i < NV; ++i) d[i] += acc[g][i];
            }
        }
    }
}

// Samples per group of channeled_rows_group for nc channels: 4 up to 2 vectors of channels, 2 up to 4, where
// one sample's vectors are too few to keep the FMA units busy; one sample at a time above (channeled_rows).
template <typename T>
constexpr int group_size(int64_t nc) {
    constexpr int64_t L = 64 / sizeof(T);
    return nc <= 2 * L ? 4 : (nc <= 4 * L ? 2 : 1);
}

// f(std::integral_constant<int, G>{}) with G = group_size<T>(nc): a kernel templated on its group size.
template <typename T, typename F>
void with_group_size(int64_t nc, F&& f) {
    switch (group_size<T>(nc)) {
        case 4:
            return f(std::integral_constant<int, 4>{});
        case 2:
            return f(std::integral_constant<int, 2>{});
        default:
            return f(std::integral_constant<int, 1>{});
    }
}

// channeled_rows (Add) for G samples: chunks of up to 8 / G vectors for all G, a plain loop per sample for the rest.
template <typename T, int G>
void channeled_rows_group(const Flat<T>* lo, const Flat<T>* la, const Flat<T>* lb, const T* const* ca,
                          const Runs& runs, int64_t nc, bool shared) {
    constexpr int64_t L = 64 / sizeof(T);
    int64_t u0 = 0;
    if constexpr (G <= 2)
        for (; u0 + 4 * L <= nc; u0 += 4 * L) channeled_group<T, G, 4>(lo, la, lb, ca, runs, u0, shared);
    for (; u0 + 2 * L <= nc; u0 += 2 * L) channeled_group<T, G, 2>(lo, la, lb, ca, runs, u0, shared);
    for (; u0 + L <= nc; u0 += L) channeled_group<T, G, 1>(lo, la, lb, ca, runs, u0, shared);
    if (u0 < nc)
        for (int g = 0; g < G; ++g)
            channeled_chunk<T, 0, true>(shared ? lo[0] : lo[g], la[g], lb[g], ca[g], runs, u0, nc - u0);
}

// Channels [u0, u0 + NV L) (NV > 0, in registers) or [u0, u0 + width) (NV == 0, scalar) of scalar_group: a run
// with one (b, d) pair forms b * d once per sample, then one vector (or scalar) of partial products per a row
// and sample, shared by the entries that differ only in their output, added into acc[g no + io] (vectors,
// reduced across lanes by scalar_group) or, for the scalar channels, straight into o[g][io].
template <typename T, int G, int NV, typename R>
void scalar_chunk(const R* la, const R* lb, const R* ld, T* const* o, int64_t no, Entries t,
                  const T* __restrict coef, typename Simd<T>::V* __restrict acc, bool shared, int64_t u0,
                  int64_t width) {
    using V = typename Simd<T>::V;
    const int sets = shared ? 1 : G;
    for (int64_t k = 0; k < t.nnz;) {
        const int64_t kb = t.ib[k], kd = t.ic[k];
        V z[G][NV > 0 ? NV : 1];
        if constexpr (NV > 0) {
#pragma GCC unroll 4
            for (int g = 0; g < G; ++g) {
                const V* y = reinterpret_cast<const V*>(lb[g][kb] + u0);
                const V* w = reinterpret_cast<const V*>(ld[g][kd] + u0);
#pragma GCC unroll 4
                for (int i = 0; i < NV; ++i) z[g][i] = y[i] * w[i];
            }
        }
        while (k < t.nnz && t.ib[k] == kb && t.ic[k] == kd) {
            const int64_t ka = t.ia[k];
            V sum[G];
            T dot[G];
#pragma GCC unroll 4
            for (int g = 0; g < G; ++g) {
                if constexpr (NV > 0) {
                    const V* x = reinterpret_cast<const V*>(la[g][ka] + u0);
                    sum[g] = x[0] * z[g][0];
#pragma GCC unroll 4
                    for (int i = 1; i < NV; ++i) sum[g] += x[i] * z[g][i];
                } else {
                    const T *__restrict x = la[g][ka] + u0, *__restrict y = lb[g][kb] + u0, *__restrict w = ld[g][kd] + u0;
                    dot[g] = T(0);
                    for (int64_t u = 0; u < width; ++u) dot[g] += x[u] * y[u] * w[u];
                }
            }
            if (shared)
                for (int g = 1; g < G; ++g) {
                    if constexpr (NV > 0) sum[0] += sum[g];
                    else dot[0] += dot[g];
                }
            for (; k < t.nnz && t.ib[k] == kb && t.ic[k] == kd && t.ia[k] == ka; ++k)
                for (int g = 0; g < sets; ++g) {
                    if constexpr (NV > 0) acc[g * no + t.io[k]] += coef[k] * sum[g];
                    else o[g][t.io[k]] += coef[k] * dot[g];
                }
        }
    }
}

// o[io_k] += c_k dot(a[ia_k], b[ib_k] d[id_k]) over the entries, for G samples at once (as channeled_group):
// sample g's operands la[g], lb[g], ld[g] and output o[g] of no values, or, when `shared`, all G samples added
// into o[0]. Channels go in chunks of up to 4 vectors held in registers (scalar_chunk; 2 for G = 4: the G
// samples' products b * d fill registers too), then a scalar loop for the rest; each output gathers its entries'
// vectors in acc (G x no vectors of scratch, no when shared) and is reduced across lanes once, at the end.
template <typename T, int G, typename R>
void scalar_group(const R* la, const R* lb, const R* ld, T* const* o, int64_t no, int64_t nc, Entries t,
                  const T* __restrict coef, typename Simd<T>::V* __restrict acc, bool shared) {
    using V = typename Simd<T>::V;
    constexpr int64_t L = 64 / sizeof(T);
    const int sets = shared ? 1 : G;  // accumulator sets (and outputs)
    for (int64_t q = 0; q < sets * no; ++q) acc[q] = V{};
    int64_t u0 = 0;
    if constexpr (G <= 2)
        for (; u0 + 4 * L <= nc; u0 += 4 * L) scalar_chunk<T, G, 4>(la, lb, ld, o, no, t, coef, acc, shared, u0, 0);
    for (; u0 + 2 * L <= nc; u0 += 2 * L) scalar_chunk<T, G, 2>(la, lb, ld, o, no, t, coef, acc, shared, u0, 0);
    for (; u0 + L <= nc; u0 += L) scalar_chunk<T, G, 1>(la, lb, ld, o, no, t, coef, acc, shared, u0, 0);
    if (u0 < nc) scalar_chunk<T, G, 0>(la, lb, ld, o, no, t, coef, acc, shared, u0, nc - u0);
    for (int g = 0; g < sets; ++g)
        for (int64_t q = 0; q < no; ++q) {
            T s = T(0);
            for (int l = 0; l < L; ++l) s += acc[g * no + q][l];
            o[g][q] += s;
        }
}

// One sample of scalar_group.
template <typename T, typename RA, typename RB, typename RD>
void scalar_entries(const RA& la, const RB& lb, const RD& ld, T* __restrict o, int64_t no, int64_t nc, Entries t,
                    const T* __restrict coef, typename Simd<T>::V* __restrict acc) {
    static_assert(std::is_same_v<RA, RB> && std::is_same_v<RA, RD>, "one row accessor type for the three operands");
    T* const out[1] = {o};
    scalar_group<T, 1>(&la, &lb, &ld, out, no, nc, t, coef, acc, false);
}

}  // namespace fastso3_cw
