// Edge-frame rotation of per-node tables of hidden features: the (gated) multilinear form
//
//   F(e, W, P, g, S) = sum_{b,m,h} e[m,b,h] g[b,|m - K|,h] (sum_{l: |m - K| <= l+1} sum_{|n - L| <= l+1}
//                      W[b,l,m,n] P[l,index[b],n,m,h] + [m = K] S[index[b],h])
//
// e: (M = 2K+1, B, H) per-edge hidden features by order; W: (B, L, M, N = 2L+1) Wigner blocks (index l holds
// degree l+1, only its block counts); P: (L, R, N, M, H) a table per node, degree-major (the layout in which
// per-degree matmuls over the nodes write and read it); g: (B, K+1, H) per-edge gates shared by +-m; S: (R, H)
// per-node scalars of the m = 0 row, which no rotation touches; index: (B,) the node row of each edge. g and S
// may be absent (null inputs: no gate, no scalar term), and W with P (no rotated term).
// The form is contracted into any subset of its slots, each from the others: slot 0 (e) rotates each edge's
// table row into the frame (and gates it), slot 2 (P) sums each edge's gated, rotated-back hidden features into
// its node, slots 1 and 3 are the gradients of W and of the gates, slot 4 (S) sums each edge's gated m = 0 row
// into its node. The gated features never reach memory.
// Every inner loop is a contiguous axpy or dot over the hidden axis H. The edges are visited sorted by node (a
// stable counting sort of index), so each node's table row is read (slots 0, 1, 3) or summed (slots 2, 4) while
// it is in cache: a table is L N M H numbers per node, several MB, and random rows would come from memory. Slots
// 0, 1 and 3 are parallel over the sorted edges; slots 2 and 4 are parallel over nodes, each summing its edges in
// edge order, so results do not depend on the thread count. Entries outside the blocks are never read and
// written as zero. All tensors contiguous.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// order: the edges sorted stably by index[b] in [0, R); node i's edges are order[starts[i]:starts[i+1]]
void counting_sort(const int64_t* index, int64_t B, int64_t R, std::vector<int64_t>& order,
                   std::vector<int64_t>& starts) {
    starts.assign(R + 1, 0);
    for (int64_t b = 0; b < B; ++b) ++starts[index[b] + 1];
    for (int64_t i = 0; i < R; ++i) starts[i + 1] += starts[i];
    std::vector<int64_t> next(starts.begin(), starts.end() - 1);
    order.resize(B);
    for (int64_t b = 0; b < B; ++b) order[next[index[b]]++] = b;
}

// Visited sorted by node, the edges' own rows (e, W, g) are random: fetch them a few edges ahead.
constexpr int64_t kAhead = 8;

template <typename T>
void prefetch_edge(int64_t b, const T* e, const T* w, const T* g, int64_t B, int64_t w_row, int64_t M, int64_t H,
                   bool write) {
    constexpr int64_t line = 64 / sizeof(T);
    for (int64_t j = 0; w && j < w_row; j += line) __builtin_prefetch(w + b * w_row + j, 0);
    if (g)
        for (int64_t j = 0; j < (M + 1) / 2 * H; j += line) __builtin_prefetch(g + b * (M + 1) / 2 * H + j, 0);
    for (int64_t m = 0; m < M; ++m)
        for (int64_t h = 0; h < H; h += line) {
            if (write) __builtin_prefetch(e + (m * B + b) * H + h, 1);
            else __builtin_prefetch(e + (m * B + b) * H + h, 0);
        }
}

// Register blocks of the hidden axis: kHB units (4 vectors of 64 bytes) accumulate in registers over a row's
// entries, instead of a load and a store of the sum per entry.
constexpr int64_t kHBBytes = 256;

// r[0:n] += a x[0:n] for the first min(n, kHB) units (the full block unrolled at a fixed width)
template <typename T, int64_t kHB = kHBBytes / sizeof(T)>
inline void axpy_block(T* __restrict r, T a, const T* __restrict x, int64_t n) {
    if (n >= kHB) {
#pragma omp simd
        for (int64_t h = 0; h < kHB; ++h) r[h] += a * x[h];
    } else {
        for (int64_t h = 0; h < n; ++h) r[h] += a * x[h];
    }
}

template <typename T>
void so2_table(const T* e, const T* w, const T* p, const T* g, const T* s, const int64_t* index, T* out_e, T* out_w,
               T* out_p, T* out_g, T* out_s, int64_t B, int64_t R, int64_t L, int64_t M, int64_t H, int nthreads) {
    const int64_t N = 2 * L + 1, K = (M - 1) / 2;
    constexpr int64_t kHB = kHBBytes / sizeof(T);
    std::vector<int64_t> order, starts;
    counting_sort(index, B, R, order, starts);
    // rows m of degree index l: |m - K| <= l + 1
    auto m_lo = [&](int64_t l) { return std::max<int64_t>(0, K - l - 1); };
    auto m_hi = [&](int64_t l) { return std::min<int64_t>(M, K + l + 2); };
    auto order_of = [&](int64_t m) { return m > K ? m - K : K - m; };  // |m| of row m
    // the gate of edge b's order m (shared by +-m), or null: no gate
    auto gate = [&](int64_t b, int64_t m) { return g ? g + (b * (K + 1) + order_of(m)) * H : nullptr; };
    // o[:] = e[m,b,:] times its gate (or e alone without a gate)
    auto gated = [&](int64_t b, int64_t m, T* __restrict o) {
        const T* __restrict er = e + (m * B + b) * H;
        const T* __restrict gr = gate(b, m);
        if (gr) {
#pragma omp simd
            for (int64_t h = 0; h < H; ++h) o[h] = er[h] * gr[h];
        } else {
            std::memcpy(o, er, sizeof(T) * H);
        }
    };
    if (out_e || out_w || out_g) {
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && B > 1)
        {
            std::vector<T> acc(M * H), eg(H);
#pragma omp for schedule(static)
            for (int64_t k = 0; k < B; ++k) {
                const int64_t b = order[k];
                if (k + kAhead < B)
                    prefetch_edge(order[k + kAhead], out_e ? out_e : e, w, g, B, L * M * N, M, H, out_e != nullptr);
                const T* pb = p ? p + index[b] * N * M * H : nullptr;  // + l R N M H for degree index l
                const T* wb = w ? w + b * L * M * N : nullptr;  // either null (absent): no rotated term
                if (out_e || out_g) {  // acc[m,:] = sum_{l,n} W[b,l,m,n] P[l,i,n,m,:], kHB units at a time in registers
                    if (!pb || !wb) std::fill(acc.begin(), acc.end(), T(0));
                    for (int64_t m = 0; pb && wb && m < M; ++m)
                        for (int64_t h0 = 0; h0 < H; h0 += kHB) {
                            T r[kHB] = {};
                            for (int64_t l = std::max<int64_t>(0, order_of(m) - 1); l < L; ++l)
                                for (int64_t n = L - l - 1; n < L + l + 2; ++n)
                                    axpy_block(r, wb[(l * M + m) * N + n], pb + ((l * R * N + n) * M + m) * H + h0,
                                               H - h0);  // fmt: skip
                            std::memcpy(acc.data() + m * H + h0, r, sizeof(T) * std::min<int64_t>(kHB, H - h0));
                        }
                    if (s) {  // the node's scalars join the m = 0 row
                        const T* __restrict si = s + index[b] * H;
                        T* __restrict a0 = acc.data() + K * H;
#pragma omp simd
                        for (int64_t h = 0; h < H; ++h) a0[h] += si[h];
                    }
                }
                if (out_e)  // e[m,b,:] = acc[m,:] (times the gate)
                    for (int64_t m = 0; m < M; ++m) {
                        T* __restrict o = out_e + (m * B + b) * H;
                        const T* __restrict a = acc.data() + m * H;
                        const T* gr = gate(b, m);
                        if (gr) {
#pragma omp simd
                            for (int64_t h = 0; h < H; ++h) o[h] = a[h] * gr[h];
                        } else {
                            std::memcpy(o, a, sizeof(T) * H);
                        }
                    }
                if (out_g) {  // g[b,|m|,:] = sum_{+-m} acc[m,:] e[m,b,:]
                    T* __restrict ob = out_g + b * (K + 1) * H;
                    std::memset(ob, 0, sizeof(T) * (K + 1) * H);
                    for (int64_t m = 0; m < M; ++m) {
                        T* __restrict o = ob + order_of(m) * H;
                        const T* __restrict a = acc.data() + m * H;
                        const T* __restrict er = e + (m * B + b) * H;
#pragma omp simd
                        for (int64_t h = 0; h < H; ++h) o[h] += a[h] * er[h];
                    }
                }
                if (out_w) {  // dW[b,l,m,n] = sum_h e[m,b,h] g[b,|m|,h] P[l,i,n,m,h] in the blocks, else 0
                    T* __restrict ob = out_w + b * L * M * N;
                    std::memset(ob, 0, sizeof(T) * L * M * N);
                    for (int64_t m = 0; pb && m < M; ++m) {
                        gated(b, m, eg.data());
                        const T* __restrict er = eg.data();
                        for (int64_t l = std::max<int64_t>(0, order_of(m) - 1); l < L; ++l)
                            for (int64_t n = L - l - 1; n < L + l + 2; ++n) {
                                const T* __restrict src = pb + ((l * R * N + n) * M + m) * H;
                                T dot = T(0);
#pragma omp simd reduction(+ : dot)
                                for (int64_t h = 0; h < H; ++h) dot += er[h] * src[h];
                                ob[(l * M + m) * N + n] = dot;
                            }
                    }
                }
            }
        }
    }
    // P[l,i,n,m,:] = sum_{b: index[b] = i} W[b,l,m,n] e[m,b,:] g[b,|m|,:] in the blocks, else 0;
    // S[i,:] = sum_{b: index[b] = i} e[K,b,:] g[b,0,:]
    if (out_p || out_s) {
#pragma omp parallel num_threads(nthreads) if (nthreads > 1 && R > 1)
        {
            std::vector<T> rows;  // the node's edges' gated hidden features, (edge, m, h): gathered once, in cache
#pragma omp for schedule(dynamic, 16)
            for (int64_t i = 0; i < R; ++i) {
                const int64_t k0 = starts[i], degree = starts[i + 1] - k0;
                rows.resize(degree * M * H);
                for (int64_t q = 0; q < degree; ++q) {
                    const int64_t b = order[k0 + q];
                    if (k0 + q + kAhead < B) prefetch_edge(order[k0 + q + kAhead], e, w, g, B, L * M * N, M, H, false);
                    for (int64_t m = 0; m < M; ++m) gated(b, m, rows.data() + (q * M + m) * H);
                }
                if (out_s) {
                    T* __restrict si = out_s + i * H;
                    std::memset(si, 0, sizeof(T) * H);
                    for (int64_t q = 0; q < degree; ++q) {
                        const T* __restrict r0 = rows.data() + (q * M + K) * H;
#pragma omp simd
                        for (int64_t h = 0; h < H; ++h) si[h] += r0[h];
                    }
                }
                if (!out_p) continue;
                T* __restrict pi = out_p + i * N * M * H;  // + l R N M H for degree index l
                for (int64_t l = 0; l < L; ++l) {
                    std::memset(pi + l * R * N * M * H, 0, sizeof(T) * N * M * H);
                    for (int64_t n = L - l - 1; n < L + l + 2; ++n)
                        for (int64_t m = m_lo(l); m < m_hi(l); ++m)
                            for (int64_t h0 = 0; h0 < H; h0 += kHB) {  // the sum over the edges in registers
                                T r[kHB] = {};
                                for (int64_t q = 0; q < degree; ++q)
                                    axpy_block(r, w[order[k0 + q] * L * M * N + (l * M + m) * N + n],
                                               rows.data() + (q * M + m) * H + h0, H - h0);  // fmt: skip
                                std::memcpy(pi + ((l * R * N + n) * M + m) * H + h0, r,
                                            sizeof(T) * std::min<int64_t>(kHB, H - h0));  // fmt: skip
                            }
                }
            }
        }
    }
}

}  // namespace

extern "C" {
// e, W, P, g, S: contiguous (null for an output slot; g and S also null when absent); index (B,) with values in
// [0, R); out_*: non-null for the slots to compute
#define FASTSO3_SO2_TABLE(T, SUFFIX)                                                                              \
    void fastso3_so2_table_##SUFFIX(const T* e, const T* w, const T* p, const T* g, const T* s,                     \
                                    const int64_t* index, T* out_e, T* out_w, T* out_p, T* out_g, T* out_s,         \
                                    int64_t B, int64_t R, int64_t L, int64_t M, int64_t H, int nthreads) {         \
        so2_table<T>(e, w, p, g, s, index, out_e, out_w, out_p, out_g, out_s, B, R, L, M, H, nthreads);           \
    }

FASTSO3_SO2_TABLE(float, f32)
FASTSO3_SO2_TABLE(double, f64)
}
