// Channel-wise contractions over a table of entries (four index slots and a coefficient), C channels.
// The tensor product z_u = sum c x_u y w_u of mode uvu and all its derivatives are these two kernels with
// the slots in different roles:
//   channeled output: out[o, u] = sum_e c[e] * a[ia[e], u] * b[ib[e], u] * s[is[e]]
//   scalar output:    out[o]    = sum_e c[e] * sum_u a[ia[e], u] * b[ib[e], u] * d[id[e], u]
// Row r, channel u of a channeled tensor of sample z lives at ptr[z * stride + base[r] + u * step[r]]
// (e3nn's mul_ir blocks: step = 2l+1; channels innermost: base = r C, step = 1).
//
// Per sample (one thread each, so results do not depend on the thread count):
// - rows with step 1 are read, and written, in place; a mul_ir block (C, d) is transposed to (d, C) scratch
//   rows through registers (16 floats / 8 doubles of d rows at a time, `transpose_in`/`transpose_out`), and
//   written back the same way; any other row is copied element by element;
// - the entries come sorted (channeled: by output row, then b row, then a row; scalar: by b row, d row, a row)
//   so that a run with one output row accumulates in registers and is stored once, a run with one b row
//   multiplies b once (acc += b * sum_k c_k s_k a_k), and a scalar run with one (b, d) pair forms b * d once
//   and one vector of products per a row, shared by the entries that differ only in their output, added into
//   per-output vector accumulators reduced once per sample (channelwise_entries.h).
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include <sys/mman.h>

#include "channelwise_entries.h"

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace {

using fastso3_cw::Entries;
using fastso3_cw::Runs;

// Transposes between a mul_ir block (nc, D) row-major and D channels-innermost rows of nc channels.
// Full tiles of L = 64 / sizeof(T) channels (D vectors either way) go through AVX-512 registers: row k,
// lane t is tile element t D + k, and tile element j L + t is row (j L + t) % D, lane (j L + t) / D, so each
// output vector is at most D masked lane permutes, one per source vector. Other channels: a scalar loop.
template <typename T, int D>
struct Tiles {
    static constexpr int L = 64 / sizeof(T);
    int32_t lane_in[D][L] = {}, lane_out[D][L] = {};  // source lane of output vector k (in) / j (out), lane t
    uint32_t take_in[D][D] = {}, take_out[D][D] = {};  // lanes of output vector k (j) from source vector j (k)
    constexpr Tiles() {
        for (int k = 0; k < D; ++k)
            for (int t = 0; t < L; ++t) {
                const int f = t * D + k;  // in: row k, lane t <- tile vector f / L, lane f % L
                lane_in[k][t] = f % L;
                take_in[k][f / L] |= 1u << t;
                const int g = k * L + t;  // out: tile vector k, lane t <- row g % D, lane g / D
                lane_out[k][t] = g / D;
                take_out[k][g % D] |= 1u << t;
            }
    }
};

#ifdef __AVX512F__
inline __m512 permute_lanes(__m512 r, uint32_t take, const int32_t* lanes, __m512 v) {
    return _mm512_mask_permutexvar_ps(r, (__mmask16)take, _mm512_loadu_si512(lanes), v);
}
inline __m512d permute_lanes(__m512d r, uint32_t take, const int32_t* lanes, __m512d v) {
    const __m512i idx = _mm512_cvtepi32_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lanes)));
    return _mm512_mask_permutexvar_pd(r, (__mmask8)take, idx, v);
}
template <typename T>
struct Zmm;
template <>
struct Zmm<float> {
    using V = __m512;
    static V load(const float* p) { return _mm512_loadu_ps(p); }
    static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
    static V zero() { return _mm512_setzero_ps(); }
};
template <>
struct Zmm<double> {
    using V = __m512d;
    static V load(const double* p) { return _mm512_loadu_pd(p); }
    static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
    static V zero() { return _mm512_setzero_pd(); }
};

// In: rows <- tile vectors; else tile vectors <- rows. Returns the channels done (full tiles). The D
// vectors of a side are nc apart (rows) or L apart (tile); consecutive tiles L (rows) or L D (tile).
template <typename T, int D, bool In>
int64_t transpose_tiles(const T* __restrict src, T* __restrict dst, int64_t nc) {
    static constexpr Tiles<T, D> tiles{};  // compile-time masks and lanes: the loops below unroll into permutes
    using Z = Zmm<T>;
    constexpr int L = Tiles<T, D>::L;
    const int64_t src_step = In ? L : nc, dst_step = In ? nc : L, src_tile = In ? L * D : L, dst_tile = In ? L : L * D;
    int64_t u0 = 0;
    for (; u0 + L <= nc; u0 += L, src += src_tile, dst += dst_tile) {
        typename Z::V v[D];
#pragma GCC unroll 16
        for (int j = 0; j < D; ++j) v[j] = Z::load(src + j * src_step);
#pragma GCC unroll 16
        for (int k = 0; k < D; ++k) {
            typename Z::V r = Z::zero();
#pragma GCC unroll 16
            for (int j = 0; j < D; ++j) {
                const uint32_t take = In ? tiles.take_in[k][j] : tiles.take_out[k][j];
                if (take) r = permute_lanes(r, take, In ? tiles.lane_in[k] : tiles.lane_out[k], v[j]);
            }
            Z::store(dst + k * dst_step, r);
        }
    }
    return u0;
}
#else
template <typename T, int D, bool In>
int64_t transpose_tiles(const T*, T*, int64_t) {
    return 0;
}
#endif

// (nc, D) row-major block -> D rows of nc channels (row stride nc).
template <typename T, int D>
void transpose_in(const T* __restrict src, T* __restrict dst, int64_t nc) {
    for (int64_t u = transpose_tiles<T, D, true>(src, dst, nc); u < nc; ++u)
        for (int k = 0; k < D; ++k) dst[k * nc + u] = src[u * D + k];
}

// D rows of nc channels -> (nc, D) row-major block.
template <typename T, int D>
void transpose_out(const T* __restrict src, T* __restrict dst, int64_t nc) {
    for (int64_t u = transpose_tiles<T, D, false>(src, dst, nc); u < nc; ++u)
        for (int k = 0; k < D; ++k) dst[u * D + k] = src[k * nc + u];
}

struct Channeled {
    const void* ptr;
    int64_t stride, rows;
    const int64_t* base;
    const int64_t* step;
};

// A run of rows of one operand: `width` == 0 in place (step 1), D >= 2 a mul_ir block of D rows with
// step D, -1 one row of any other step (copied element by element).
struct Segment {
    int64_t row, base, width;
};

constexpr int MAX_BLOCK = 9;  // mul_ir blocks up to l = 4 go through the register transposes

std::vector<Segment> segments(const Channeled& t) {
    std::vector<Segment> out;
    for (int64_t r = 0; r < t.rows;) {
        const int64_t d = t.step[r];
        bool block = d >= 2 && d <= MAX_BLOCK && r + d <= t.rows;
        for (int64_t m = 0; block && m < d; ++m) block = t.step[r + m] == d && t.base[r + m] == t.base[r] + m;
        if (d == 1) {
            out.push_back({r, t.base[r], 0});
            r += 1;
        } else if (block) {
            out.push_back({r, t.base[r], d});
            r += d;
        } else {
            out.push_back({r, t.base[r], -1});
            r += 1;
        }
    }
    return out;
}

template <typename T, int D = 2>
void dispatch_transpose(bool in, int64_t d, const T* src, T* dst, int64_t nc) {
    if constexpr (D <= MAX_BLOCK) {
        if (d == D) return in ? transpose_in<T, D>(src, dst, nc) : transpose_out<T, D>(src, dst, nc);
        dispatch_transpose<T, D + 1>(in, d, src, dst, nc);
    }
}

// Rows of one operand of the current sample: pointers into the sample's memory (in-place rows) or into
// channels-innermost scratch.
template <typename T>
struct Rows {
    const Channeled& t;
    int64_t nc;
    std::vector<Segment> segs;
    std::vector<T> scratch;
    std::vector<T*> row;
    Rows(const Channeled& t_, int64_t nc_) : t(t_), nc(nc_), segs(segments(t_)), scratch(t_.rows * nc_), row(t_.rows) {
        for (int64_t r = 0; r < t.rows; ++r) row[r] = scratch.data() + r * nc;
    }
    T* sample(int64_t z) const { return static_cast<T*>(const_cast<void*>(t.ptr)) + z * t.stride; }
    void load(int64_t z) {
        T* p = sample(z);
        for (const Segment& s : segs) {
            if (s.width == 0) {
                row[s.row] = p + s.base;
            } else if (s.width > 0) {
                dispatch_transpose<T>(true, s.width, p + s.base, row[s.row], nc);
            } else {
                const int64_t st = t.step[s.row];
                for (int64_t u = 0; u < nc; ++u) row[s.row][u] = p[s.base + u * st];
            }
        }
    }
    void point_outputs(int64_t z) {  // in-place output rows are computed directly in the output
        T* p = sample(z);
        for (const Segment& s : segs)
            if (s.width == 0) row[s.row] = p + s.base;
    }
    void store(int64_t z) {
        T* p = sample(z);
        for (const Segment& s : segs) {
            if (s.width > 0) {
                dispatch_transpose<T>(false, s.width, row[s.row], p + s.base, nc);
            } else if (s.width < 0) {
                const int64_t st = t.step[s.row];
                for (int64_t u = 0; u < nc; ++u) p[s.base + u * st] = row[s.row][u];
            }
        }
    }
};

template <typename T>
void cw_channeled(Channeled a, Channeled b, const T* __restrict sc, int64_t ns, Channeled out, int64_t nz, int64_t nc,
                  Entries t, const T* coef, int nthreads) {
    const Runs runs(t);
    constexpr int W = fastso3_cw::kLanes<T>;
    std::vector<char> written(out.rows, 0);
    for (int64_t k = 0; k < t.nnz; ++k) written[t.io[k]] = 1;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nz > 16)
    {
        Rows<T> ra(a, nc), rb(b, nc), ro(out, nc);
        std::vector<T> ca(runs.a.size() * W), st(runs.ns * W);
#pragma omp for schedule(static)
        for (int64_t z0 = 0; z0 < nz; z0 += W) {  // W samples' run coefficients at once
            const int n = static_cast<int>(std::min<int64_t>(W, nz - z0));
            const T* srow[W];
            for (int q = 0; q < n; ++q) srow[q] = sc + (z0 + q) * ns;
            runs.coefficients(ca.data(), coef, srow, n, t.ic, st.data());
            for (int q = 0; q < n; ++q) {
                const int64_t z = z0 + q;
                ra.load(z);
                rb.load(z);
                ro.point_outputs(z);
                for (int64_t r = 0; r < out.rows; ++r)
                    if (!written[r]) std::memset(ro.row[r], 0, sizeof(T) * nc);
                fastso3_cw::channeled_rows<T, false>(ro.row.data(), ra.row.data(), rb.row.data(), ca.data() + q, runs,
                                                     nc);
                ro.store(z);
            }
        }
    }
}

template <typename T>
void cw_scalar(Channeled a, Channeled b, Channeled d, T* __restrict out, int64_t no, int64_t nz, int64_t nc, Entries t,
               const T* coef, int nthreads) {
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nz > 16)
    {
        Rows<T> ra(a, nc), rb(b, nc), rd(d, nc);
        std::vector<T> acc(no * 64 / sizeof(T));  // no vectors
#pragma omp for schedule(static)
        for (int64_t z = 0; z < nz; ++z) {
            ra.load(z);
            rb.load(z);
            rd.load(z);
            T* __restrict o = out + z * no;
            std::memset(o, 0, sizeof(T) * no);
            fastso3_cw::scalar_entries(ra.row.data(), rb.row.data(), rd.row.data(), o, no, nc, t, coef,
                                       reinterpret_cast<typename fastso3_cw::Simd<T>::V*>(acc.data()));
        }
    }
}

// Contractions of the 4-linear form into several slots in one pass over the samples (the gradients of a
// product into its operands' slots): each operand's rows are loaded (transposed) once per sample, where one
// call per output reloads the shared ones, e.g. the output's cotangent, three times for a backward pass.
// Output k has the slot out_slot[k], entries idx[4k..4k+3] (in the order of SLOT_ROLES: output, a, b, c),
// whose operands are the slots operand_slot[3k..3k+2]; slot 2 is channel-free, and a channeled output's third
// operand is always slot 2 (SLOT_ROLES), whose row of the sample gives the run coefficients.
template <typename T>
void cw_contract(const void* const* in_ptr, const int64_t* dims, const int64_t* rows, const int64_t* const* bases,
                 const int64_t* const* steps, int64_t n_out, const int64_t* out_slot, const int64_t* operand_slot,
                 void* const* out_ptr, const int64_t* nnz, const int64_t* const* idx, const void* const* coef,
                 int64_t nz, int64_t nc, int nthreads) {
    constexpr int64_t SCALAR = 2;
    std::vector<Channeled> in(4), out(n_out);
    std::vector<char> needed(4, 0);
    std::vector<Entries> tab(n_out);
    std::vector<Runs> runs;
    std::vector<std::vector<char>> written(n_out);
    int64_t scalar_rows = 0;
    for (int64_t s = 0; s < 4; ++s) in[s] = Channeled{in_ptr[s], dims[s], rows[s], bases[s], steps[s]};
    for (int64_t k = 0; k < n_out; ++k) {
        const int64_t s = out_slot[k];
        tab[k] = Entries{nnz[k], idx[4 * k], idx[4 * k + 1], idx[4 * k + 2], idx[4 * k + 3]};
        runs.emplace_back(s == SCALAR ? Entries{0, nullptr, nullptr, nullptr, nullptr} : tab[k]);
        out[k] = Channeled{out_ptr[k], dims[s], rows[s], bases[s], steps[s]};
        for (int i = 0; i < 3; ++i) needed[operand_slot[3 * k + i]] = 1;
        written[k].assign(rows[s], 0);
        for (int64_t e = 0; e < nnz[k]; ++e) written[k][tab[k].io[e]] = 1;
        if (s == SCALAR) scalar_rows = dims[s];
    }
    constexpr int64_t L = 64 / sizeof(T);
    constexpr int W = fastso3_cw::kLanes<T>;
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && nz > 16)
    {
        std::vector<std::unique_ptr<Rows<T>>> rin(4), rout(n_out);
        for (int64_t s = 0; s < 4; ++s)
            if (needed[s] && s != SCALAR) rin[s] = std::make_unique<Rows<T>>(in[s], nc);
        std::vector<std::vector<T>> ca(n_out);
        for (int64_t k = 0; k < n_out; ++k)
            if (out_slot[k] != SCALAR) rout[k] = std::make_unique<Rows<T>>(out[k], nc), ca[k].resize(runs[k].a.size() * W);
        std::vector<T> acc(scalar_rows * L), st(dims[SCALAR] * W);
        const T* sc = static_cast<const T*>(in_ptr[SCALAR]);
#pragma omp for schedule(static)
        for (int64_t z0 = 0; z0 < nz; z0 += W) {  // W samples' run coefficients at once
            const int n = static_cast<int>(std::min<int64_t>(W, nz - z0));
            const T* srow[W];
            for (int q = 0; q < n; ++q) srow[q] = sc ? sc + (z0 + q) * dims[SCALAR] : nullptr;  // null: no channeled output
            for (int64_t k = 0; k < n_out; ++k)
                if (out_slot[k] != SCALAR)
                    runs[k].coefficients(ca[k].data(), static_cast<const T*>(coef[k]), srow, n, tab[k].ic, st.data());
            for (int q = 0; q < n; ++q) {
                const int64_t z = z0 + q;
                for (int64_t s = 0; s < 4; ++s)
                    if (rin[s]) rin[s]->load(z);
                for (int64_t k = 0; k < n_out; ++k) {
                    const int64_t* ops = operand_slot + 3 * k;
                    if (out_slot[k] == SCALAR) {
                        T* __restrict o = static_cast<T*>(out_ptr[k]) + z * scalar_rows;
                        std::memset(o, 0, sizeof(T) * scalar_rows);
                        fastso3_cw::scalar_entries(rin[ops[0]]->row.data(), rin[ops[1]]->row.data(),
                                                   rin[ops[2]]->row.data(), o, scalar_rows, nc, tab[k],
                                                   static_cast<const T*>(coef[k]),
                                                   reinterpret_cast<typename fastso3_cw::Simd<T>::V*>(acc.data()));
                        continue;
                    }
                    Rows<T>& ro = *rout[k];
                    ro.point_outputs(z);
                    for (int64_t r = 0; r < out[k].rows; ++r)
                        if (!written[k][r]) std::memset(ro.row[r], 0, sizeof(T) * nc);
                    fastso3_cw::channeled_rows<T, false>(ro.row.data(), rin[ops[0]]->row.data(),
                                                         rin[ops[1]]->row.data(), ca[k].data() + q, runs[k], nc);
                    ro.store(z);
                }
            }
        }
    }
}

}  // namespace

extern "C" {

#define FASTSO3_CW_INSTANTIATE(T, SUFFIX)                                                                        \
    void fastso3_cw_channeled_##SUFFIX(const T* a, int64_t sa, int64_t na, const int64_t* ba, const int64_t* ta, \
                                       const T* b, int64_t sb, int64_t nb, const int64_t* bb, const int64_t* tb, \
                                       const T* s, int64_t ns, T* out, int64_t so, int64_t no,                  \
                                       const int64_t* bo, const int64_t* to, int64_t nz, int64_t nc,            \
                                       int64_t nnz, const int64_t* io, const int64_t* ia, const int64_t* ib,    \
                                       const int64_t* is, const T* coef, int nthreads) {                        \
        cw_channeled<T>(Channeled{a, sa, na, ba, ta}, Channeled{b, sb, nb, bb, tb}, s, ns,                      \
                        Channeled{out, so, no, bo, to}, nz, nc, Entries{nnz, io, ia, ib, is}, coef, nthreads);  \
    }                                                                                                           \
    void fastso3_cw_scalar_##SUFFIX(const T* a, int64_t sa, int64_t na, const int64_t* ba, const int64_t* ta,    \
                                    const T* b, int64_t sb, int64_t nb, const int64_t* bb, const int64_t* tb,    \
                                    const T* d, int64_t sd, int64_t nd, const int64_t* bd, const int64_t* td,    \
                                    T* out, int64_t no, int64_t nz, int64_t nc, int64_t nnz,                    \
                                    const int64_t* io, const int64_t* ia, const int64_t* ib, const int64_t* id, \
                                    const T* coef, int nthreads) {                                              \
        cw_scalar<T>(Channeled{a, sa, na, ba, ta}, Channeled{b, sb, nb, bb, tb}, Channeled{d, sd, nd, bd, td},  \
                     out, no, nz, nc, Entries{nnz, io, ia, ib, id}, coef, nthreads);                            \
    }

FASTSO3_CW_INSTANTIATE(float, f32)
FASTSO3_CW_INSTANTIATE(double, f64)

#define FASTSO3_CW_CONTRACT(T, SUFFIX)                                                                              \
    void fastso3_cw_contract_##SUFFIX(const void* const* in_ptr, const int64_t* dims, const int64_t* rows,          \
                                      const int64_t* const* bases, const int64_t* const* steps, int64_t n_out,      \
                                      const int64_t* out_slot, const int64_t* operand_slot, void* const* out_ptr,   \
                                      const int64_t* nnz, const int64_t* const* idx, const void* const* coef,       \
                                      int64_t nz, int64_t nc, int nthreads) {                                      \
        cw_contract<T>(in_ptr, dims, rows, bases, steps, n_out, out_slot, operand_slot, out_ptr, nnz, idx, coef, nz, \
                       nc, nthreads);                                                                              \
    }

FASTSO3_CW_CONTRACT(float, f32)
FASTSO3_CW_CONTRACT(double, f64)

// Ask for transparent huge pages on the 2 MiB-aligned interior of a fresh, untouched buffer of `bytes`: the
// first touch of a large per-sample output then faults 2 MiB at a time instead of 4 KiB (those faults, not
// the arithmetic, bound these kernels' forward on a fresh output). Advice only; ignored where unsupported.
void fastso3_advise_huge_pages(void* ptr, int64_t bytes) {
#ifdef MADV_HUGEPAGE
    constexpr uintptr_t huge = uintptr_t(1) << 21;
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(ptr) + huge - 1) & ~(huge - 1);
    const uintptr_t end = (reinterpret_cast<uintptr_t>(ptr) + static_cast<uintptr_t>(bytes)) & ~(huge - 1);
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
    (void)ptr;
    (void)bytes;
#endif
}
}
