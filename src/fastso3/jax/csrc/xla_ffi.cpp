// XLA FFI handlers for fastso3.jax's backend="cpu": thin adapters from XLA buffers and attributes to the
// C ABI of the CPU kernel library (src/fastso3/kernels/cpu/csrc, linked in), which does all the work.
//
// Every handler checks what the kernel will read: buffer ranks and shapes, table lengths, and every table
// index against the extent of the buffer it indexes, and returns an InvalidArgument error otherwise.
#include <cstdint>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

extern "C" {
#define FASTSO3_DECLARE(T, SUFFIX)                                                                             \
    void fastso3_sh_forward_##SUFFIX(const T*, T*, int64_t, int, int64_t, int64_t, const int64_t*,            \
                                     const int64_t*, const int64_t*, const T*, const T*, int);                 \
    void fastso3_sparse_accumulate_##SUFFIX(const T*, const T*, T*, int64_t, int64_t, int64_t, int64_t,        \
                                            int64_t, const int64_t*, const int64_t*, const int64_t*, const T*, \
                                            int);                                                      \
    void fastso3_cw_channeled_##SUFFIX(const T*, int64_t, int64_t, const int64_t*, const int64_t*, const T*,  \
                                       int64_t, int64_t, const int64_t*, const int64_t*, const T*, int64_t, T*,  \
                                       int64_t, int64_t, const int64_t*, const int64_t*, int64_t, int64_t,      \
                                       int64_t, const int64_t*, const int64_t*, const int64_t*, const int64_t*, \
                                       const T*, int);                                                         \
    void fastso3_cw_scalar_##SUFFIX(const T*, int64_t, int64_t, const int64_t*, const int64_t*, const T*,     \
                                    int64_t, int64_t, const int64_t*, const int64_t*, const T*, int64_t,        \
                                    int64_t, const int64_t*, const int64_t*, T*, int64_t, int64_t, int64_t,     \
                                    int64_t, const int64_t*, const int64_t*, const int64_t*, const int64_t*,    \
                                    const T*, int);
FASTSO3_DECLARE(float, f32)
FASTSO3_DECLARE(double, f64)
#undef FASTSO3_DECLARE
}

namespace {

template <typename T>
struct Kernels;
template <>
struct Kernels<float> {
    static constexpr auto sh = fastso3_sh_forward_f32;
    static constexpr auto sparse_accumulate = fastso3_sparse_accumulate_f32;
    static constexpr auto cw_channeled = fastso3_cw_channeled_f32;
    static constexpr auto cw_scalar = fastso3_cw_scalar_f32;
};
template <>
struct Kernels<double> {
    static constexpr auto sh = fastso3_sh_forward_f64;
    static constexpr auto sparse_accumulate = fastso3_sparse_accumulate_f64;
    static constexpr auto cw_channeled = fastso3_cw_channeled_f64;
    static constexpr auto cw_scalar = fastso3_cw_scalar_f64;
};

ffi::Error invalid(const std::string& msg) { return ffi::Error::InvalidArgument("fastso3 (jax ffi): " + msg); }

// (rows, last) of a buffer read as a row-major (rows, last) matrix; last = -1 for a rank-0 buffer.
template <typename B>
std::pair<int64_t, int64_t> matrix(const B& b) {
    auto dims = b.dimensions();
    if (dims.size() == 0) return {0, -1};
    int64_t rows = 1;
    for (size_t i = 0; i + 1 < dims.size(); ++i) rows *= dims[i];
    return {rows, dims.back()};
}

template <typename B1, typename B2>
bool same_leading(const B1& a, const B2& b) {
    auto da = a.dimensions(), db = b.dimensions();
    if (da.size() != db.size()) return false;
    for (size_t i = 0; i + 1 < da.size(); ++i)
        if (da[i] != db[i]) return false;
    return true;
}

bool in_range(ffi::Span<const int64_t> idx, int64_t bound) {
    for (int64_t v : idx)
        if (v < 0 || v >= bound) return false;
    return true;
}

template <ffi::DataType D>
using Native = ffi::NativeType<D>;

// y (..., size) = spherical harmonics of x (..., 3) from the plan's forward table (see fastso3.core.sh).
template <ffi::DataType D>
ffi::Error sh_impl(ffi::Buffer<D> x, ffi::ResultBuffer<D> y, int64_t normalize, int64_t size,
                   ffi::Span<const int64_t> e_out, ffi::Span<const int64_t> e_in, ffi::Span<const int64_t> e_dim,
                   ffi::Span<const Native<D>> coef, ffi::Span<const Native<D>> scale, int64_t nthreads) {
    auto [n, three] = matrix(x);
    auto [ny, sy] = matrix(*y);
    if (three != 3) return invalid("spherical harmonics: x must have shape (..., 3)");
    if (!same_leading(x, *y) || sy != size) return invalid("spherical harmonics: y must have shape (..., size)");
    const size_t nnz = coef.size();
    if (e_out.size() != nnz || e_in.size() != nnz || e_dim.size() != nnz || scale.size() != size_t(size))
        return invalid("spherical harmonics: table arrays of unequal lengths");
    if (!in_range(e_out, size) || !in_range(e_in, size) || !in_range(e_dim, 3))
        return invalid("spherical harmonics: a table index is out of range");
    for (size_t e = 0; e < nnz; ++e)  // the recursion reads finished lower components only
        if (e_in[e] >= e_out[e] || (e > 0 && e_out[e] < e_out[e - 1]))
            return invalid("spherical harmonics: the table is not a sorted recursion");
    Kernels<Native<D>>::sh(x.typed_data(), y->typed_data(), n, int(normalize != 0), size, int64_t(nnz), e_out.begin(),
                           e_in.begin(), e_dim.begin(), coef.begin(), scale.begin(), int(nthreads));
    return ffi::Error::Success();
}

// out (..., nout)[e_out] += coef * x1 (..., n1)[e_in1] * x2 (..., n2)[e_in2], row by row.
template <ffi::DataType D>
ffi::Error sparse_accumulate_impl(ffi::Buffer<D> x1, ffi::Buffer<D> x2, ffi::ResultBuffer<D> out,
                                  ffi::Span<const int64_t> e_out, ffi::Span<const int64_t> e_in1,
                                  ffi::Span<const int64_t> e_in2, ffi::Span<const Native<D>> coef, int64_t nthreads) {
    auto [n, n1] = matrix(x1);
    auto [n_2, n2] = matrix(x2);
    auto [n_o, nout] = matrix(*out);
    if (n1 < 0 || !same_leading(x1, x2) || !same_leading(x1, *out))
        return invalid("sparse accumulation: x1, x2 and out must have the same leading dimensions");
    const size_t nnz = coef.size();
    if (e_out.size() != nnz || e_in1.size() != nnz || e_in2.size() != nnz)
        return invalid("sparse accumulation: table arrays of unequal lengths");
    if (!in_range(e_out, nout) || !in_range(e_in1, n1) || !in_range(e_in2, n2))
        return invalid("sparse accumulation: a table index is out of range");
    Kernels<Native<D>>::sparse_accumulate(x1.typed_data(), x2.typed_data(), out->typed_data(), n, n1, n2, nout,
                                          int64_t(nnz), e_out.begin(), e_in1.begin(), e_in2.begin(), coef.begin(),
                                          int(nthreads));
    return ffi::Error::Success();
}

// A channeled operand's layout (see channelwise.cpp): row r, channel u at base[r] + u * step[r] of its `dim`
// values per sample. True if every position lies inside the sample; with `cover`, also that the rows hit
// every position exactly once (an output whose unreached positions XLA would leave uninitialised).
bool layout_ok(ffi::Span<const int64_t> base, ffi::Span<const int64_t> step, int64_t nc, int64_t dim, bool cover) {
    if (base.size() != step.size()) return false;
    std::vector<char> hit(cover ? dim : 0, 0);
    for (size_t r = 0; r < base.size(); ++r) {
        if (base[r] < 0 || step[r] < 0 || base[r] + (nc - 1) * step[r] >= dim) return false;
        for (int64_t u = 0; cover && u < nc; ++u)
            if (hit[base[r] + u * step[r]]++) return false;
    }
    if (cover)
        for (char h : hit)
            if (!h) return false;
    return true;
}

// Channel-wise contraction (the 4-linear form of fastso3.core.channelwise into one slot), row by row:
//   channeled: out[o, u] = sum_e coef a[ia, u] b[ib, u] c[ic]     (c channel-free)
//   scalar:    out[o]    = sum_e coef sum_u a[ia, u] b[ib, u] c[ic, u]
// Channeled buffers are (..., dim) with the row layouts given (o_* only for a channeled output).
template <ffi::DataType D, bool Scalar>
ffi::Error cw_impl(ffi::Buffer<D> a, ffi::Buffer<D> b, ffi::Buffer<D> c, ffi::ResultBuffer<D> out,
                   ffi::Span<const int64_t> a_base, ffi::Span<const int64_t> a_step, ffi::Span<const int64_t> b_base,
                   ffi::Span<const int64_t> b_step, ffi::Span<const int64_t> c_base, ffi::Span<const int64_t> c_step,
                   ffi::Span<const int64_t> o_base, ffi::Span<const int64_t> o_step, ffi::Span<const int64_t> io,
                   ffi::Span<const int64_t> ia, ffi::Span<const int64_t> ib, ffi::Span<const int64_t> ic,
                   ffi::Span<const Native<D>> coef, int64_t nc, int64_t nthreads) {
    const char* op = Scalar ? "channel-wise (scalar output)" : "channel-wise (channeled output)";
    auto fail = [&](const char* what) { return invalid(std::string(op) + ": " + what); };
    auto [nz, da] = matrix(a);
    auto [nz_b, db] = matrix(b);
    auto [nz_c, dc] = matrix(c);
    auto [nz_o, dout] = matrix(*out);
    if (da < 0 || !same_leading(a, b) || !same_leading(a, c) || !same_leading(a, *out))
        return fail("a, b, c and out must have the same leading dimensions");
    if (nc <= 0) return fail("the channel count must be positive");
    if (!layout_ok(a_base, a_step, nc, da, false) || !layout_ok(b_base, b_step, nc, db, false))
        return fail("a row layout of a or b does not fit its buffer");
    if (Scalar ? !layout_ok(c_base, c_step, nc, dc, false) : !layout_ok(o_base, o_step, nc, dout, true))
        return fail(Scalar ? "the row layout of c does not fit its buffer"
                           : "the output row layout does not cover its buffer exactly once");
    const size_t nnz = coef.size();
    if (io.size() != nnz || ia.size() != nnz || ib.size() != nnz || ic.size() != nnz)
        return fail("table arrays of unequal lengths");
    const int64_t rows_o = Scalar ? dout : int64_t(o_base.size()), rows_c = Scalar ? int64_t(c_base.size()) : dc;
    if (!in_range(io, rows_o) || !in_range(ia, a_base.size()) || !in_range(ib, b_base.size()) || !in_range(ic, rows_c))
        return fail("a table index is out of range");
    for (size_t e = 1; !Scalar && e < nnz; ++e)  // each output row is one run, stored once
        if (io[e] < io[e - 1]) return fail("the table is not sorted by output row");
    const int64_t na = a_base.size(), nb = b_base.size();
    if constexpr (Scalar) {
        Kernels<Native<D>>::cw_scalar(a.typed_data(), da, na, a_base.begin(), a_step.begin(), b.typed_data(), db, nb,
                                      b_base.begin(), b_step.begin(), c.typed_data(), dc, int64_t(c_base.size()),
                                      c_base.begin(), c_step.begin(), out->typed_data(), dout, nz, nc, int64_t(nnz),
                                      io.begin(), ia.begin(), ib.begin(), ic.begin(), coef.begin(), int(nthreads));
    } else {
        Kernels<Native<D>>::cw_channeled(a.typed_data(), da, na, a_base.begin(), a_step.begin(), b.typed_data(), db,
                                         nb, b_base.begin(), b_step.begin(), c.typed_data(), dc, out->typed_data(),
                                         dout, int64_t(o_base.size()), o_base.begin(), o_step.begin(), nz, nc,
                                         int64_t(nnz), io.begin(), ia.begin(), ib.begin(), ic.begin(), coef.begin(),
                                         int(nthreads));
    }
    return ffi::Error::Success();
}

}  // namespace

#define FASTSO3_CW_HANDLER(D, NAME, SCALAR)                                                        \
    XLA_FFI_DEFINE_HANDLER_SYMBOL(fastso3_xla_##NAME, (cw_impl<D, SCALAR>),                           \
                                  ffi::Ffi::Bind()                                                    \
                                      .Arg<ffi::Buffer<D>>()                                          \
                                      .Arg<ffi::Buffer<D>>()                                          \
                                      .Arg<ffi::Buffer<D>>()                                          \
                                      .Ret<ffi::Buffer<D>>()                                          \
                                      .Attr<ffi::Span<const int64_t>>("a_base")                       \
                                      .Attr<ffi::Span<const int64_t>>("a_step")                       \
                                      .Attr<ffi::Span<const int64_t>>("b_base")                       \
                                      .Attr<ffi::Span<const int64_t>>("b_step")                       \
                                      .Attr<ffi::Span<const int64_t>>("c_base")                       \
                                      .Attr<ffi::Span<const int64_t>>("c_step")                       \
                                      .Attr<ffi::Span<const int64_t>>("o_base")                       \
                                      .Attr<ffi::Span<const int64_t>>("o_step")                       \
                                      .Attr<ffi::Span<const int64_t>>("io")                           \
                                      .Attr<ffi::Span<const int64_t>>("ia")                           \
                                      .Attr<ffi::Span<const int64_t>>("ib")                           \
                                      .Attr<ffi::Span<const int64_t>>("ic")                           \
                                      .Attr<ffi::Span<const Native<D>>>("coef")                       \
                                      .Attr<int64_t>("channels")                                      \
                                      .Attr<int64_t>("nthreads"));

#define FASTSO3_HANDLERS(D, SUFFIX)                                                                       \
    XLA_FFI_DEFINE_HANDLER_SYMBOL(fastso3_xla_sh_##SUFFIX, sh_impl<D>,                                    \
                                  ffi::Ffi::Bind()                                                        \
                                      .Arg<ffi::Buffer<D>>()                                              \
                                      .Ret<ffi::Buffer<D>>()                                              \
                                      .Attr<int64_t>("normalize")                                         \
                                      .Attr<int64_t>("size")                                              \
                                      .Attr<ffi::Span<const int64_t>>("e_out")                            \
                                      .Attr<ffi::Span<const int64_t>>("e_in")                             \
                                      .Attr<ffi::Span<const int64_t>>("e_dim")                            \
                                      .Attr<ffi::Span<const Native<D>>>("coef")                           \
                                      .Attr<ffi::Span<const Native<D>>>("scale")                          \
                                      .Attr<int64_t>("nthreads"));                                        \
    XLA_FFI_DEFINE_HANDLER_SYMBOL(fastso3_xla_sparse_accumulate_##SUFFIX, sparse_accumulate_impl<D>,      \
                                  ffi::Ffi::Bind()                                                        \
                                      .Arg<ffi::Buffer<D>>()                                              \
                                      .Arg<ffi::Buffer<D>>()                                              \
                                      .Ret<ffi::Buffer<D>>()                                              \
                                      .Attr<ffi::Span<const int64_t>>("e_out")                            \
                                      .Attr<ffi::Span<const int64_t>>("e_in1")                            \
                                      .Attr<ffi::Span<const int64_t>>("e_in2")                            \
                                      .Attr<ffi::Span<const Native<D>>>("coef")                           \
                                      .Attr<int64_t>("nthreads"));                                        \
    FASTSO3_CW_HANDLER(D, cw_channeled_##SUFFIX, false)                                                    \
    FASTSO3_CW_HANDLER(D, cw_scalar_##SUFFIX, true)

FASTSO3_HANDLERS(ffi::F32, f32)
FASTSO3_HANDLERS(ffi::F64, f64)
