// The learning built-ins: Teaclave's logistic_regression_train,
// logistic_regression_predict and principal_components_analysis, and kmeans.
// The numeric cores (declared in learning.hpp) work on row-major doubles in
// place of the parsed inputs; every loop is bounded by the declared arguments.
#include "functions/learning.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <immintrin.h>
#include <limits>
#include <random>
#include <string>

#include "functions/registry.hpp"
#include "functions/text.hpp"

namespace mesatee::functions {

// --------------------------------------------------------------------------- numeric cores

namespace learning {
namespace {

// Four partial sums, so the compiler can keep them in vector registers (a plain
// floating-point reduction is never reordered without -ffast-math).
inline double dot(const double* __restrict a, const double* __restrict b, size_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t j = 0;
    for (; j + 4 <= n; j += 4) {
        s0 += a[j] * b[j];
        s1 += a[j + 1] * b[j + 1];
        s2 += a[j + 2] * b[j + 2];
        s3 += a[j + 3] * b[j + 3];
    }
    for (; j < n; ++j) s0 += a[j] * b[j];
    return (s0 + s2) + (s1 + s3);
}

inline void axpy(double* __restrict y, double a, const double* __restrict x, size_t n) {
    for (size_t j = 0; j < n; ++j) y[j] += a * x[j];
}

inline double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }
inline double softplus(double z) { return z > 0 ? z + std::log1p(std::exp(-z)) : std::log1p(std::exp(z)); }

// Four doubles as one value (GCC's vector extension): one AVX register where the CPU has AVX2, SSE pairs
// otherwise, with the same IEEE operations in the same order (but for FMA, below).
using v4d = double __attribute__((vector_size(32)));
using v4i = long long __attribute__((vector_size(32)));  // long long: as __m256i

// Vectors go by reference: by value they would change the ABI between the targets (-Wpsabi).
__attribute__((always_inline)) inline void load4(v4d& v, const double* p) { std::memcpy(&v, p, sizeof v); }
__attribute__((always_inline)) inline void store4(double* p, const v4d& v) { std::memcpy(p, &v, sizeof v); }

__attribute__((target("avx2,fma"))) inline void fused_madd(v4d& acc, const v4d& a, const v4d& b) {
    acc = _mm256_fmadd_pd(a, b, acc);
}

__attribute__((target("avx2,fma"))) inline void masked_load(v4d& v, const double* p, const v4i& mask) {
    v = _mm256_maskload_pd(p, mask);
}

// v = the lanes of p where mask is set (a prefix of lanes), zero elsewhere; reads nothing past them.
template <bool Fma>
inline void load_tail(v4d& v, const double* p, const v4i& mask) {
    if constexpr (Fma) {
        masked_load(v, p, mask);
    } else {
        v = v4d{};
        for (int k = 0; k < 4 && mask[k]; ++k) v[k] = p[k];
    }
}

// acc += a * b: one rounding with Fma, two without.
template <bool Fma>
inline void madd(v4d& acc, const v4d& a, const v4d& b) {
    if constexpr (Fma)
        fused_madd(acc, a, b);
    else
        acc += a * b;
}

// 1 / (1 + e^-z) per lane, without branches or calls. e^t: t = k ln2 + r with k = round(t / ln2), |r| <= ln2/2
// (ln2 split in two, fdlibm's constants, so k ln2_hi is exact); e^r by its Taylor series to degree 13
// (truncation below 2^-60 relative); 2^k written into the exponent bits. t is clamped to +-708 so 2^k stays
// normal: beyond, sigmoid is 0 or 1 within 1e-307. NaN passes through (a diverged model stays non-finite).
__attribute__((always_inline)) inline void sigmoid4(v4d& z) {
    constexpr double kLog2e = 1.4426950408889634, kLn2Hi = 6.93147180369123816490e-01,
                     kLn2Lo = 1.90821492927058770002e-10, kShift = 0x1.8p52;  // kShift: rounds to an integer
    v4d t = -z;
    t = t < -708.0 ? -708.0 : t;
    t = t > 708.0 ? 708.0 : t;
    v4d shifted = t * kLog2e + kShift;
    v4d k = shifted - kShift;
    v4d r = (t - k * kLn2Hi) - k * kLn2Lo;
    v4d p = v4d{} + 1.0 / 6227020800.0;  // 1/13!
    for (double c : {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
                     1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0})
        p = p * r + c;
    // shifted's low bits hold k (two's complement); adding the bias and shifting left leaves 2^k's bits.
    v4i scale_bits = (__builtin_bit_cast(v4i, shifted) + 1023) << 52;
    z = 1.0 / (1.0 + p * __builtin_bit_cast(v4d, scale_bits));
}

// One pass over the rows: sums[0] = sum_i r_i, sums[1 + j] = sum_i r_i x_ij with r_i = sigmoid(z_i) - y_i;
// with Loss, also returns sum_i [softplus(z_i) - y_i z_i]. Block by block of rows (about 8 KB), so a row
// comes from memory once (prefetched two blocks ahead) and is read again from L1: first the block's z, four
// rows at a time (four dot products summed lane-wise, then transposed into one vector); then its residuals
// (independent vectors, so the sigmoid's long dependency chain overlaps with itself); then the gradient,
// four rows at a time, so its running sums are loaded and stored once per four rows. A row's last d % 4
// values are read by a masked load, against weights and sums padded with zeros to a multiple of 4.
template <bool Loss, bool Fma>
__attribute__((always_inline)) inline double residual_sums_body(const Rows& x, const double* y, size_t y_stride,
                                                                const double* b, double* sums) {
    constexpr size_t kMaxBlock = 32, kBlockBytes = 8192, kAhead = 2;
    const size_t d = x.cols, full = d / 4 * 4, padded = (d + 3) / 4 * 4;
    const size_t block = std::clamp<size_t>(kBlockBytes / (sizeof(double) * d) / 4 * 4, 4, kMaxBlock);
    const size_t group_bytes = 4 * x.stride * sizeof(double);
    const v4i tail_mask = v4i{0, 1, 2, 3} < static_cast<long long>(d - full);
    std::vector<double> w_padded(padded, 0.0), g_padded(padded, 0.0);
    std::copy(b + 1, b + 1 + d, w_padded.begin());
    const double* __restrict w = w_padded.data();
    double* __restrict g = g_padded.data();
    v4d r_sum = {}, loss = {}, zs[kMaxBlock / 4];
    for (size_t start = 0; start < x.rows; start += block) {
        const size_t n = std::min(block, x.rows - start), groups = (n + 3) / 4;
        for (size_t q = 0; q < n / 4; ++q) {
            const double* __restrict a0 = x.row(start + 4 * q);
            const double* __restrict a1 = a0 + x.stride;
            const double* __restrict a2 = a1 + x.stride;
            const double* __restrict a3 = a2 + x.stride;
            if (start + kAhead * block + 4 * q + 4 <= x.rows) {
                const char* ahead = reinterpret_cast<const char*>(a0 + kAhead * block * x.stride);
                for (size_t at = 0; at < group_bytes; at += 64) __builtin_prefetch(ahead + at);
            }
            v4d s0 = {}, s1 = {}, s2 = {}, s3 = {}, wj, v0, v1, v2, v3;
            for (size_t j = 0; j < full; j += 4) {
                load4(wj, w + j), load4(v0, a0 + j), load4(v1, a1 + j), load4(v2, a2 + j), load4(v3, a3 + j);
                madd<Fma>(s0, v0, wj), madd<Fma>(s1, v1, wj), madd<Fma>(s2, v2, wj), madd<Fma>(s3, v3, wj);
            }
            if (full < d) {
                load4(wj, w + full);
                load_tail<Fma>(v0, a0 + full, tail_mask), load_tail<Fma>(v1, a1 + full, tail_mask);
                load_tail<Fma>(v2, a2 + full, tail_mask), load_tail<Fma>(v3, a3 + full, tail_mask);
                madd<Fma>(s0, v0, wj), madd<Fma>(s1, v1, wj), madd<Fma>(s2, v2, wj), madd<Fma>(s3, v3, wj);
            }
            // Transpose-and-add: lane k = (s_k[0] + s_k[1]) + (s_k[2] + s_k[3]).
            v4d h01 = __builtin_shuffle(s0, s1, v4i{0, 4, 2, 6}) + __builtin_shuffle(s0, s1, v4i{1, 5, 3, 7});
            v4d h23 = __builtin_shuffle(s2, s3, v4i{0, 4, 2, 6}) + __builtin_shuffle(s2, s3, v4i{1, 5, 3, 7});
            v4d z = __builtin_shuffle(h01, h23, v4i{0, 1, 4, 5}) + __builtin_shuffle(h01, h23, v4i{2, 3, 6, 7});
            zs[q] = z + b[0];
        }
        if (n % 4 != 0) {  // the last rows, lane by lane
            zs[n / 4] = v4d{};
            for (size_t k = 0; k < n % 4; ++k) zs[n / 4][k] = b[0] + dot(x.row(start + n / 4 * 4 + k), w, d);
        }
        for (size_t q = 0; q < groups; ++q) {
            const size_t lanes = std::min<size_t>(4, n - 4 * q);
            v4d label = {}, z = zs[q], r = z;
            for (size_t k = 0; k < lanes; ++k) label[k] = y[(start + 4 * q + k) * y_stride];
            sigmoid4(r);
            r -= label;
            for (size_t k = lanes; k < 4; ++k) r[k] = 0;  // no row there
            if constexpr (Loss) {
                for (size_t k = 0; k < lanes; ++k) loss[k] += softplus(z[k]) - label[k] * z[k];
            }
            r_sum += r;
            zs[q] = r;
        }
        for (size_t q = 0; q < n / 4; ++q) {
            const double* __restrict a0 = x.row(start + 4 * q);
            const double* __restrict a1 = a0 + x.stride;
            const double* __restrict a2 = a1 + x.stride;
            const double* __restrict a3 = a2 + x.stride;
            const v4d c0 = v4d{} + zs[q][0], c1 = v4d{} + zs[q][1], c2 = v4d{} + zs[q][2], c3 = v4d{} + zs[q][3];
            v4d gj, v0, v1, v2, v3;
            for (size_t j = 0; j < full; j += 4) {
                load4(gj, g + j), load4(v0, a0 + j), load4(v1, a1 + j), load4(v2, a2 + j), load4(v3, a3 + j);
                madd<Fma>(gj, v0, c0), madd<Fma>(gj, v1, c1), madd<Fma>(gj, v2, c2), madd<Fma>(gj, v3, c3);
                store4(g + j, gj);
            }
            if (full < d) {
                load4(gj, g + full);
                load_tail<Fma>(v0, a0 + full, tail_mask), load_tail<Fma>(v1, a1 + full, tail_mask);
                load_tail<Fma>(v2, a2 + full, tail_mask), load_tail<Fma>(v3, a3 + full, tail_mask);
                madd<Fma>(gj, v0, c0), madd<Fma>(gj, v1, c1), madd<Fma>(gj, v2, c2), madd<Fma>(gj, v3, c3);
                store4(g + full, gj);
            }
        }
        for (size_t k = 0; k < n % 4; ++k) axpy(g, zs[n / 4][k], x.row(start + n / 4 * 4 + k), d);
    }
    sums[0] = (r_sum[0] + r_sum[1]) + (r_sum[2] + r_sum[3]);
    std::copy(g, g + d, sums + 1);
    return (loss[0] + loss[1]) + (loss[2] + loss[3]);
}

// The pass above, compiled for AVX2 with FMA (flatten: inlines madd's fused form, which needs that target),
// and for the baseline, chosen once by the CPU. FMA rounds once where the baseline rounds twice, so the
// two give models that differ in the last bits; each is deterministic.
__attribute__((target("avx2,fma"), flatten)) double residual_sums_fma(const Rows& x, const double* y,
                                                                      size_t y_stride, const double* b,
                                                                      double* sums, bool loss) {
    return loss ? residual_sums_body<true, true>(x, y, y_stride, b, sums)
                : residual_sums_body<false, true>(x, y, y_stride, b, sums);
}

double residual_sums_baseline(const Rows& x, const double* y, size_t y_stride, const double* b, double* sums,
                              bool loss) {
    return loss ? residual_sums_body<true, false>(x, y, y_stride, b, sums)
                : residual_sums_body<false, false>(x, y, y_stride, b, sums);
}

double residual_sums(const Rows& x, const double* y, size_t y_stride, const double* b, double* sums, bool loss) {
    static const bool fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return fma ? residual_sums_fma(x, y, y_stride, b, sums, loss)
               : residual_sums_baseline(x, y, y_stride, b, sums, loss);
}

double max_abs(const std::vector<double>& v) {
    double m = 0;
    for (double e : v) m = std::max(m, std::fabs(e));
    return m;
}

}  // namespace

void sigmoid_values(const double* z, double* out, size_t n) {
    for (size_t i = 0; i < n; i += 4) {
        const size_t lanes = std::min<size_t>(4, n - i);
        v4d v = {};
        std::memcpy(&v, z + i, lanes * sizeof(double));
        sigmoid4(v);
        std::memcpy(out + i, &v, lanes * sizeof(double));
    }
}

std::vector<double> logistic_gd(const Rows& x, const double* y, size_t y_stride, double alpha, int64_t iters, double l2) {
    const size_t p = x.cols + 1;
    const double m = static_cast<double>(x.rows);
    std::vector<double> b(p, 0.5), sums(p);
    for (int64_t it = 0; it < iters; ++it) {
        residual_sums(x, y, y_stride, b.data(), sums.data(), false);
        b[0] -= sums[0] / m * alpha;
        for (size_t j = 1; j < p; ++j) b[j] -= (sums[j] / m + l2 * b[j]) * alpha;
    }
    return b;
}

double logistic_objective(const Rows& x, const double* y, size_t y_stride, const double* b, double l2, double* gradient) {
    const size_t p = x.cols + 1;
    const double m = static_cast<double>(x.rows);
    double loss = residual_sums(x, y, y_stride, b, gradient, true) / m;
    double penalty = 0;
    gradient[0] /= m;
    for (size_t j = 1; j < p; ++j) {
        gradient[j] = gradient[j] / m + l2 * b[j];
        penalty += b[j] * b[j];
    }
    return loss + 0.5 * l2 * penalty;
}

std::vector<double> logistic_lbfgs(const Rows& x, const double* y, size_t y_stride, int64_t max_iters, double l2,
                                   double tolerance) {
    constexpr size_t kMemory = 10;
    constexpr double kArmijo = 1e-4;
    constexpr int kMaxHalvings = 60;
    const size_t p = x.cols + 1;
    std::vector<double> b(p, 0.0), g(p), next(p), next_g(p), dir(p);
    std::vector<std::vector<double>> s(kMemory, std::vector<double>(p)), yv(kMemory, std::vector<double>(p));
    std::vector<double> rho(kMemory), a(kMemory);
    size_t stored = 0, newest = 0;  // the pairs: a ring of `stored` entries ending at `newest`
    double f = logistic_objective(x, y, y_stride, b.data(), l2, g.data());
    for (int64_t it = 0; it < max_iters && max_abs(g) > tolerance; ++it) {
        // Two-loop recursion: dir = -H g.
        dir = g;
        for (size_t n = 0; n < stored; ++n) {
            size_t k = (newest + kMemory - n) % kMemory;
            a[k] = rho[k] * dot(s[k].data(), dir.data(), p);
            axpy(dir.data(), -a[k], yv[k].data(), p);
        }
        double gamma;
        if (stored > 0) {
            gamma = dot(s[newest].data(), yv[newest].data(), p) / dot(yv[newest].data(), yv[newest].data(), p);
        } else {
            gamma = 1.0 / std::max(1.0, std::sqrt(dot(g.data(), g.data(), p)));
        }
        for (double& e : dir) e *= gamma;
        for (size_t n = stored; n-- > 0;) {
            size_t k = (newest + kMemory - n) % kMemory;
            double beta = rho[k] * dot(yv[k].data(), dir.data(), p);
            axpy(dir.data(), a[k] - beta, s[k].data(), p);
        }
        for (double& e : dir) e = -e;
        double slope = dot(g.data(), dir.data(), p);
        if (!(slope < 0)) {  // not a descent direction: forget the curvature pairs, follow the gradient
            stored = 0;
            double scale = 1.0 / std::max(1.0, std::sqrt(dot(g.data(), g.data(), p)));
            for (size_t j = 0; j < p; ++j) dir[j] = -g[j] * scale;
            slope = dot(g.data(), dir.data(), p);
        }
        // Backtracking line search (Armijo).
        double t = 1.0, next_f = 0;
        bool decreased = false;
        for (int h = 0; h < kMaxHalvings; ++h, t *= 0.5) {
            for (size_t j = 0; j < p; ++j) next[j] = b[j] + t * dir[j];
            next_f = logistic_objective(x, y, y_stride, next.data(), l2, next_g.data());
            if (next_f <= f + kArmijo * t * slope) {
                decreased = true;
                break;
            }
        }
        if (!decreased) break;  // no step decreases J: converged as far as doubles allow
        size_t k = stored == 0 ? 0 : (newest + 1) % kMemory;
        for (size_t j = 0; j < p; ++j) {
            s[k][j] = next[j] - b[j];
            yv[k][j] = next_g[j] - g[j];
        }
        double sy = dot(s[k].data(), yv[k].data(), p);
        if (sy > 1e-300) {
            rho[k] = 1.0 / sy;
            newest = k;
            stored = std::min(stored + 1, kMemory);
        }
        bool flat = f - next_f <= 1e-15 * std::max(1.0, std::fabs(f));
        b.swap(next);
        g.swap(next_g);
        f = next_f;
        if (flat) break;
    }
    return b;
}

namespace {

// The eigenvalues and eigenvectors of a symmetric d x d matrix (row-major; overwritten): Householder
// reduction to tridiagonal form, then the implicit QL iteration with shifts. On return vectors' row i is the
// unit eigenvector of values[i]. Every inner loop runs along rows (contiguous), so it scales to d = 512.
void symmetric_eigen(std::vector<double>& a, size_t d, std::vector<double>& values, std::vector<double>& vectors) {
    values.assign(d, 0.0);
    std::vector<double> off(d, 0.0), reflectors(d * d, 0.0), p(d), w(d);
    // 1. A = Q T Q' with Q = H_0 H_1 ... ; H_k = I - 2 v v' acts on indices k+1.., v stored in reflectors' row k.
    for (size_t k = 0; k + 2 < d; ++k) {
        const size_t n = d - k - 1;
        double* x = a.data() + k * d + k + 1;  // row k right of the diagonal (= column k below it)
        double* v = reflectors.data() + k * d + k + 1;
        values[k] = a[k * d + k];
        double norm = std::sqrt(dot(x, x, n));
        if (norm == 0) continue;
        double alpha = x[0] > 0 ? -norm : norm;  // the sign that avoids cancellation in v[0]
        std::copy(x, x + n, v);
        v[0] -= alpha;
        double length = std::sqrt(dot(v, v, n));
        for (size_t i = 0; i < n; ++i) v[i] /= length;
        // The trailing block S <- H S H = S - 2 (v w' + w v') with p = S v, w = p - (v'p) v.
        for (size_t i = 0; i < n; ++i) p[i] = dot(a.data() + (k + 1 + i) * d + k + 1, v, n);
        double vp = dot(v, p.data(), n);
        for (size_t i = 0; i < n; ++i) w[i] = p[i] - vp * v[i];
        for (size_t i = 0; i < n; ++i) {
            double* __restrict srow = a.data() + (k + 1 + i) * d + k + 1;
            const double vi = 2 * v[i], wi = 2 * w[i];
            for (size_t j = 0; j < n; ++j) srow[j] -= vi * w[j] + wi * v[j];
        }
        off[k] = alpha;
    }
    if (d >= 2) off[d - 2] = a[(d - 2) * d + d - 1], values[d - 2] = a[(d - 2) * d + d - 2];
    values[d - 1] = a[(d - 1) * d + d - 1];
    // 2. vectors = Q' = ... H_1 H_0, built row-wise: vectors <- H_k vectors.
    vectors.assign(d * d, 0.0);
    for (size_t i = 0; i < d; ++i) vectors[i * d + i] = 1.0;
    std::vector<double> u(d);
    for (size_t k = 0; k + 2 < d; ++k) {
        const double* v = reflectors.data() + k * d + k + 1;
        const size_t n = d - k - 1;
        std::fill(u.begin(), u.end(), 0.0);
        for (size_t i = 0; i < n; ++i) axpy(u.data(), v[i], vectors.data() + (k + 1 + i) * d, d);
        for (size_t i = 0; i < n; ++i) axpy(vectors.data() + (k + 1 + i) * d, -2 * v[i], u.data(), d);
    }
    // 3. Implicit QL on the tridiagonal (values, off), each rotation applied to two rows of vectors.
    constexpr int kMaxIterations = 60;
    for (size_t l = 0; l < d; ++l) {
        for (int iteration = 0;; ++iteration) {
            size_t m = l;
            for (; m + 1 < d; ++m) {
                double scale = std::fabs(values[m]) + std::fabs(values[m + 1]);
                if (std::fabs(off[m]) <= std::numeric_limits<double>::epsilon() * scale) break;
            }
            if (m == l) break;
            if (iteration == kMaxIterations)
                fail(MESATEE_ERROR_FUNCTION_FAILED, "principal_components_analysis: the eigenvalue iteration did not converge");
            double g = (values[l + 1] - values[l]) / (2 * off[l]);
            double r = std::hypot(g, 1.0);
            g = values[m] - values[l] + off[l] / (g + std::copysign(r, g));
            double s = 1, c = 1, shift = 0;
            bool deflated = false;
            for (size_t i = m; i-- > l;) {
                double f = s * off[i], b = c * off[i];
                r = std::hypot(f, g);
                off[i + 1] = r;
                if (r == 0) {  // a zero off-diagonal appeared: deflate and start again
                    values[i + 1] -= shift;
                    off[m] = 0;
                    deflated = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = values[i + 1] - shift;
                r = (values[i] - g) * s + 2 * c * b;
                shift = s * r;
                values[i + 1] = g + shift;
                g = c * r - b;
                double* __restrict zi = vectors.data() + i * d;
                double* __restrict zn = vectors.data() + (i + 1) * d;
                for (size_t k = 0; k < d; ++k) {
                    double next = zn[k];
                    zn[k] = s * zi[k] + c * next;
                    zi[k] = c * zi[k] - s * next;
                }
            }
            if (deflated) continue;
            values[l] -= shift;
            off[l] = g;
            off[m] = 0;
        }
    }
}

}  // namespace

std::vector<double> pca_transform(const Rows& x, size_t n, bool center) {
    const size_t d = x.cols, m = x.rows;
    std::vector<double> mean(d, 0.0), xc(d);
    if (center) {
        for (size_t i = 0; i < m; ++i) axpy(mean.data(), 1.0, x.row(i), d);
        for (double& e : mean) e /= static_cast<double>(m);
    }
    // X'X of the (centered) rows, upper triangle then mirrored.
    std::vector<double> gram(d * d, 0.0);
    for (size_t i = 0; i < m; ++i) {
        const double* row = x.row(i);
        for (size_t j = 0; j < d; ++j) xc[j] = row[j] - mean[j];
        for (size_t j = 0; j < d; ++j) axpy(gram.data() + j * d + j, xc[j], xc.data() + j, d - j);
    }
    for (size_t j = 0; j < d; ++j)
        for (size_t k = 0; k < j; ++k) gram[j * d + k] = gram[k * d + j];
    std::vector<double> values, vectors;
    symmetric_eigen(gram, d, values, vectors);
    std::vector<size_t> order(d);
    for (size_t j = 0; j < d; ++j) order[j] = j;
    std::stable_sort(order.begin(), order.end(), [&](size_t p, size_t q) { return values[p] > values[q]; });
    // The components, d x n; each signed so that its largest entry in magnitude (the first of equal ones) is positive.
    std::vector<double> w(d * n);
    for (size_t c = 0; c < n; ++c) {
        size_t col = order[c], top = 0;
        for (size_t j = 1; j < d; ++j)
            if (std::fabs(vectors[col * d + j]) > std::fabs(vectors[col * d + top])) top = j;
        double sign = vectors[col * d + top] < 0 ? -1.0 : 1.0;
        for (size_t j = 0; j < d; ++j) w[j * n + c] = sign * vectors[col * d + j];
    }
    std::vector<double> out(m * n, 0.0);
    for (size_t i = 0; i < m; ++i) {
        const double* row = x.row(i);
        double* o = out.data() + i * n;
        for (size_t j = 0; j < d; ++j) axpy(o, row[j] - mean[j], w.data() + j * n, n);
    }
    return out;
}

namespace {

// Uniform in [0, 1) from the top 53 bits: the same on every standard library (std::uniform_real_distribution is not).
double uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

double squared_distance(const double* a, const double* b, size_t d) {
    double s = 0;
    for (size_t j = 0; j < d; ++j) s += (a[j] - b[j]) * (a[j] - b[j]);
    return s;
}

// k-means++: the first center uniformly, each next one with probability proportional to D(x)^2.
std::vector<double> kmeans_plus_plus(const Rows& x, size_t k, uint64_t seed) {
    const size_t d = x.cols, m = x.rows;
    std::mt19937_64 rng(seed);
    std::vector<double> centers(k * d), nearest(m);
    auto pick = [&](size_t c, size_t i) { std::copy(x.row(i), x.row(i) + d, centers.begin() + c * d); };
    pick(0, std::min(m - 1, static_cast<size_t>(uniform(rng) * static_cast<double>(m))));
    for (size_t i = 0; i < m; ++i) nearest[i] = squared_distance(x.row(i), centers.data(), d);
    for (size_t c = 1; c < k; ++c) {
        double total = 0;
        for (double e : nearest) total += e;
        double u = uniform(rng);
        size_t chosen = m - 1;
        if (total > 0) {
            double target = u * total, running = 0;
            for (size_t i = 0; i < m; ++i) {
                if (nearest[i] > 0) chosen = i;  // rounding at the end: the last point still eligible
                running += nearest[i];
                if (running > target && nearest[i] > 0) break;
            }
        } else {  // every point is already a center
            chosen = std::min(m - 1, static_cast<size_t>(u * static_cast<double>(m)));
        }
        pick(c, chosen);
        const double* center = centers.data() + c * d;
        for (size_t i = 0; i < m; ++i) nearest[i] = std::min(nearest[i], squared_distance(x.row(i), center, d));
    }
    return centers;
}

// Each row's nearest center (the lowest index among equal ones) and its squared distance.
void assign(const Rows& x, const std::vector<double>& centers, size_t k, std::vector<uint32_t>& labels,
            std::vector<double>& best) {
    const size_t d = x.cols;
    std::vector<double> transposed(d * k), dist(k);
    for (size_t c = 0; c < k; ++c)
        for (size_t j = 0; j < d; ++j) transposed[j * k + c] = centers[c * d + j];
    for (size_t i = 0; i < x.rows; ++i) {
        const double* row = x.row(i);
        std::fill(dist.begin(), dist.end(), 0.0);
        for (size_t j = 0; j < d; ++j) {
            const double v = row[j];
            const double* t = transposed.data() + j * k;
            double* __restrict out = dist.data();
            for (size_t c = 0; c < k; ++c) out[c] += (v - t[c]) * (v - t[c]);
        }
        size_t arg = 0;
        for (size_t c = 1; c < k; ++c)
            if (dist[c] < dist[arg]) arg = c;
        labels[i] = static_cast<uint32_t>(arg);
        best[i] = dist[arg];
    }
}

}  // namespace

KMeansResult kmeans(const Rows& x, size_t k, int64_t max_iterations, double tolerance, uint64_t seed,
                    const double* initial) {
    const size_t d = x.cols, m = x.rows;
    KMeansResult result;
    result.centers = initial ? std::vector<double>(initial, initial + k * d) : kmeans_plus_plus(x, k, seed);
    result.assignments.assign(m, 0);
    std::vector<double> best(m), sums(k * d);
    std::vector<size_t> counts(k);
    for (int64_t it = 1; it <= max_iterations; ++it) {
        assign(x, result.centers, k, result.assignments, best);
        std::fill(sums.begin(), sums.end(), 0.0);
        std::fill(counts.begin(), counts.end(), 0);
        for (size_t i = 0; i < m; ++i) {
            uint32_t c = result.assignments[i];
            axpy(sums.data() + c * d, 1.0, x.row(i), d);
            ++counts[c];
        }
        double shift = 0;
        for (size_t c = 0; c < k; ++c) {
            double* center = sums.data() + c * d;
            if (counts[c] > 0) {
                for (size_t j = 0; j < d; ++j) center[j] /= static_cast<double>(counts[c]);
            } else {  // an empty cluster restarts at the row farthest from its center (the first of equal ones)
                size_t far = static_cast<size_t>(std::max_element(best.begin(), best.end()) - best.begin());
                std::copy(x.row(far), x.row(far) + d, center);
                best[far] = -1;  // never chosen twice
            }
            shift = std::max(shift, squared_distance(center, result.centers.data() + c * d, d));
        }
        result.centers.swap(sums);
        result.iterations = it;
        if (shift <= tolerance) break;
    }
    assign(x, result.centers, k, result.assignments, best);  // the labels of the final centers
    return result;
}

}  // namespace learning

// --------------------------------------------------------------------------- text formats

namespace {

using msgpack::Value;
using learning::Rows;


// The shortest decimal that reads back as the same double, in Rust's style (as Teaclave prints):
// "1.0" rather than "1", exponents as "1e-7".
void append_number(std::string& out, double v) {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    (void)ec;  // 64 bytes always suffice for a double
    std::string_view text(buf, static_cast<size_t>(end - buf));
    size_t e = text.find('e');
    if (e != std::string_view::npos) {
        out.append(text.substr(0, e));
        out += 'e';
        std::string_view exponent = text.substr(e + 1);
        if (exponent.front() == '-') out += '-';
        if (exponent.front() == '-' || exponent.front() == '+') exponent.remove_prefix(1);
        while (exponent.size() > 1 && exponent.front() == '0') exponent.remove_prefix(1);
        out.append(exponent);
    } else {
        out.append(text);
        if (text.find('.') == std::string_view::npos) out += ".0";
    }
}

void require_finite(const std::vector<double>& values, const std::string& what) {
    for (double v : values)
        if (!std::isfinite(v)) fail(MESATEE_ERROR_FUNCTION_FAILED, what);
}

// --- the logistic model: Teaclave's JSON {"alpha":A,"iters":N,"parameters":[b0,b1,...]}

constexpr size_t kMaxFeatures = 4096;

struct LogisticModel {
    double alpha = 0;
    int64_t iters = 0;
    std::vector<double> parameters;
};

Bytes write_model(const LogisticModel& model) {
    std::string out = "{\"alpha\":";
    append_number(out, model.alpha);
    out += ",\"iters\":" + std::to_string(model.iters) + ",\"parameters\":[";
    for (size_t j = 0; j < model.parameters.size(); ++j) {
        if (j) out += ',';
        append_number(out, model.parameters[j]);
    }
    out += "]}";
    return text_bytes(out);
}

// A strict reader of exactly that shape (keys in any order, JSON whitespace between tokens, an optional
// "version":1); errors name the slot and the line, never the content.
class ModelReader {
public:
    ModelReader(const Bytes& input, std::string slot)
        : text_(reinterpret_cast<const char*>(input.data()), input.size()), slot_(std::move(slot)) {}

    LogisticModel read() {
        if (text_.empty()) fail(MESATEE_ERROR_INPUT_INVALID, "input " + slot_ + " is empty");
        LogisticModel model;
        bool alpha = false, iters = false, parameters = false, version = false;
        expect('{');
        do {
            std::string key = read_key();
            expect(':');
            if (key == "alpha" && !alpha) {
                alpha = true;
                model.alpha = read_number();
            } else if (key == "iters" && !iters) {
                iters = true;
                double v = read_number();
                if (v < 0 || v > 1e15 || v != std::floor(v)) error("iters is not a count");
                model.iters = static_cast<int64_t>(v);
            } else if (key == "version" && !version) {
                version = true;
                if (read_number() != 1) error("unknown model version");
            } else if (key == "parameters" && !parameters) {
                parameters = true;
                expect('[');
                do {
                    if (model.parameters.size() > kMaxFeatures) error("more than 4097 parameters");
                    model.parameters.push_back(read_number());
                } while (next_is(','));
                expect(']');
            } else {
                error("unexpected or repeated key (expected alpha, iters, parameters)");
            }
        } while (next_is(','));
        expect('}');
        skip_space();
        if (at_ < text_.size()) error("content after the model");
        if (!alpha || !iters || !parameters) error("the model needs alpha, iters and parameters");
        if (model.parameters.size() < 2) error("the model needs an intercept and at least one weight");
        return model;
    }

private:
    [[noreturn]] void error(const std::string& problem) {
        size_t line = 1 + static_cast<size_t>(std::count(text_.begin(), text_.begin() + std::min(at_, text_.size()), '\n'));
        bad_line(slot_, line, problem);
    }
    void skip_space() {
        while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t' || text_[at_] == '\n' || text_[at_] == '\r'))
            ++at_;
    }
    bool next_is(char c) {
        skip_space();
        if (at_ < text_.size() && text_[at_] == c) {
            ++at_;
            return true;
        }
        return false;
    }
    void expect(char c) {
        if (!next_is(c)) error(std::string("expected '") + c + "'");
    }
    std::string read_key() {
        expect('"');
        size_t start = at_;
        while (at_ < text_.size() && text_[at_] >= 'a' && text_[at_] <= 'z') ++at_;
        if (at_ >= text_.size() || text_[at_] != '"' || at_ - start > 16) error("expected a key");
        return std::string(text_.substr(start, at_++ - start));
    }
    // A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, finite.
    double read_number() {
        skip_space();
        size_t start = at_;
        auto digits = [&] {
            size_t from = at_;
            while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') ++at_;
            return at_ - from;
        };
        if (at_ < text_.size() && text_[at_] == '-') ++at_;
        size_t whole = digits();
        bool ok = whole > 0 && !(whole > 1 && text_[at_ - whole] == '0');
        if (ok && at_ < text_.size() && text_[at_] == '.') {
            ++at_;
            ok = digits() > 0;
        }
        if (ok && at_ < text_.size() && (text_[at_] == 'e' || text_[at_] == 'E')) {
            ++at_;
            if (at_ < text_.size() && (text_[at_] == '+' || text_[at_] == '-')) ++at_;
            ok = digits() > 0;
        }
        double value = 0;
        if (ok) {
            auto [ptr, ec] = std::from_chars(text_.data() + start, text_.data() + at_, value);
            ok = ec == std::errc() && ptr == text_.data() + at_ && std::isfinite(value);
        }
        if (!ok) error("expected a finite number");
        return value;
    }

    std::string_view text_;
    std::string slot_;
    size_t at_ = 0;
};

// --------------------------------------------------------------------------- logistic regression

Bytes run_logistic_regression_train(const Arguments& args, const Inputs& inputs, Outputs& outputs) {
    const size_t d = static_cast<size_t>(args.integer("feature_size"));
    const std::string slot = "training_data";
    Matrix data = parse_matrix(inputs.at(slot), slot, d + 1);
    for (size_t i = 0; i < data.rows; ++i) {
        double label = data(i, d);
        if (label != 0 && label != 1)
            bad_line(slot, i + 1, "column " + std::to_string(d + 1) + " (the label) must be 0 or 1");
    }
    Rows x{data.values.data(), data.rows, d, d + 1};
    const double* y = data.values.data() + d;
    LogisticModel model;
    model.alpha = args.number("alg_alpha");
    model.iters = args.integer("alg_iters");
    if (args.str("solver") == "lbfgs")
        model.parameters = learning::logistic_lbfgs(x, y, d + 1, model.iters, args.number("l2"), args.number("tolerance"));
    else
        model.parameters = learning::logistic_gd(x, y, d + 1, model.alpha, model.iters, args.number("l2"));
    require_finite(model.parameters,
                   "logistic_regression_train: the parameters diverged (not finite); a smaller alg_alpha may help");
    outputs["model_file"] = write_model(model);
    return text_bytes("Trained " + std::to_string(data.rows) + " lines of data.");
}

Bytes run_logistic_regression_predict(const Arguments&, const Inputs& inputs, Outputs& outputs) {
    LogisticModel model = ModelReader(inputs.at("model_file"), "model_file").read();
    const size_t d = model.parameters.size() - 1;
    Matrix data = parse_matrix(inputs.at("data_file"), "data_file", d);
    std::string out;
    out.reserve(data.rows * 7);
    char buf[32];
    for (size_t i = 0; i < data.rows; ++i) {
        double z = model.parameters[0] + learning::dot(&data.values[i * d], model.parameters.data() + 1, d);
        int n = std::snprintf(buf, sizeof buf, "%.4f\n", learning::sigmoid(z));
        out.append(buf, static_cast<size_t>(n));
    }
    outputs["result_file"] = text_bytes(out);
    return text_bytes("Predicted " + std::to_string(data.rows) + " lines of data.");
}

// --------------------------------------------------------------------------- PCA

constexpr int64_t kMaxPcaFeatures = 512;

std::string csv(const double* values, size_t rows, size_t cols) {
    std::string out;
    out.reserve(rows * cols * 24);
    for (size_t i = 0; i < rows; ++i) {
        for (size_t j = 0; j < cols; ++j) {
            if (j) out += ',';
            append_number(out, values[i * cols + j]);
        }
        out += '\n';
    }
    return out;
}

Bytes run_principal_components_analysis(const Arguments& args, const Inputs& inputs, Outputs& outputs) {
    const size_t d = static_cast<size_t>(args.integer("feature_size"));
    const size_t n = static_cast<size_t>(args.integer("n"));
    if (n > d) fail(MESATEE_ERROR_ARGUMENT_INVALID, "principal_components_analysis: argument n must be at most feature_size");
    Matrix data = parse_matrix(inputs.at("input_data"), "input_data", d + 1);
    std::vector<double> projected = learning::pca_transform({data.values.data(), data.rows, d, d + 1}, n, args.boolean("center"));
    require_finite(projected, "principal_components_analysis: the projection is not finite");
    outputs["output_data"] = text_bytes(csv(projected.data(), data.rows, n));
    return text_bytes("transform " + std::to_string(data.rows) + " rows * " + std::to_string(n) + " cols lines of data.");
}

// --------------------------------------------------------------------------- k-means

Bytes run_kmeans(const Arguments& args, const Inputs& inputs, Outputs& outputs) {
    const size_t d = static_cast<size_t>(args.integer("feature_size"));
    const size_t k = static_cast<size_t>(args.integer("k"));
    std::vector<double> initial;
    const std::string& given = args.str("initial_centers");
    if (!given.empty()) {
        Matrix centers;
        try {
            centers = parse_matrix(text_bytes(given), "initial_centers", d);
        } catch (const Error& e) {  // "input initial_centers, line ...": it is an argument here
            std::string what = e.what();
            fail(MESATEE_ERROR_ARGUMENT_INVALID, "kmeans: argument " + what.substr(what.find("initial_centers")));
        }
        if (centers.rows != k)
            fail(MESATEE_ERROR_ARGUMENT_INVALID, "kmeans: argument initial_centers must hold k lines");
        initial = std::move(centers.values);
    }
    Matrix data = parse_matrix(inputs.at("input_data"), "input_data", d);
    if (data.rows < k)
        fail(MESATEE_ERROR_INPUT_INVALID, "input input_data holds " + std::to_string(data.rows) + " lines, fewer than k");
    learning::KMeansResult result =
        learning::kmeans({data.values.data(), data.rows, d, d}, k, args.integer("max_iterations"), args.number("tolerance"),
                         static_cast<uint64_t>(args.integer("seed")), initial.empty() ? nullptr : initial.data());
    require_finite(result.centers, "kmeans: the centers are not finite");
    outputs["model_file"] = text_bytes(csv(result.centers.data(), k, d));
    std::string labels;
    labels.reserve(data.rows * 4);
    for (uint32_t c : result.assignments) labels += std::to_string(c) + '\n';
    outputs["assignments"] = text_bytes(labels);
    return text_bytes("Clustered " + std::to_string(data.rows) + " lines of data into " + std::to_string(k) + " clusters in " +
                    std::to_string(result.iterations) + " iterations.");
}

}  // namespace

// --------------------------------------------------------------------------- declarations

const Function& logistic_regression_train() {
    static const Function fn{
        "logistic_regression_train", 1,
        "Trains a logistic regression (Teaclave's gradient descent, or L-BFGS with an L2 penalty); writes the model.",
        {{"alg_alpha", ArgType::Float, std::nullopt, 0.0, 1e6, {}, "the gradient descent's learning rate"},
         {"alg_iters", ArgType::Int, std::nullopt, 1.0, 10000.0, {}, "iterations (for lbfgs: at most)"},
         {"feature_size", ArgType::Int, std::nullopt, 1.0, static_cast<double>(kMaxFeatures), {},
          "features per line, before the label"},
         {"solver", ArgType::String, Value::str("gd"), std::nullopt, std::nullopt, {"gd", "lbfgs"},
          "gd: Teaclave's batch gradient descent; lbfgs: L-BFGS"},
         {"l2", ArgType::Float, Value::real(0.0), 0.0, 1e6, {}, "L2 penalty l2/2 * |w|^2 on the weights (not the intercept)"},
         {"tolerance", ArgType::Float, Value::real(1e-6), 0.0, 1.0, {},
          "lbfgs: stop when every gradient component is at most this"}},
        {{"training_data", false, "CSV lines: feature_size numbers, then a 0/1 label"}},
        {{"model_file", false, "the model, Teaclave's JSON {\"alpha\",\"iters\",\"parameters\"}"}},
        run_logistic_regression_train};
    return fn;
}

const Function& logistic_regression_predict() {
    static const Function fn{"logistic_regression_predict", 1,
                             "Applies a logistic regression model: one probability per line, 4 decimals.",
                             {},
                             {{"model_file", false, "a model from logistic_regression_train"},
                              {"data_file", false, "CSV lines of features"}},
                             {{"result_file", false, "one probability per line of data_file, 4 decimals"}},
                             run_logistic_regression_predict};
    return fn;
}

const Function& principal_components_analysis() {
    static const Function fn{
        "principal_components_analysis", 1,
        "Projects rows on their first n principal components.",
        {{"n", ArgType::Int, std::nullopt, 1.0, static_cast<double>(kMaxPcaFeatures), {},
          "components to keep (at most feature_size)"},
         {"feature_size", ArgType::Int, std::nullopt, 1.0, static_cast<double>(kMaxPcaFeatures), {},
          "features per line, before the ignored label"},
         {"center", ArgType::Bool, Value::boolean(true), std::nullopt, std::nullopt, {}, "subtract the column means first"}},
        {{"input_data", false, "CSV lines: feature_size numbers, then a label (ignored)"}},
        {{"output_data", false, "CSV lines: the n projected coordinates of each input line"}},
        run_principal_components_analysis};
    return fn;
}

const Function& kmeans() {
    static const Function fn{
        "kmeans", 1, "Lloyd's k-means from k-means++ seeding (or given centers): the centers and each line's cluster.",
        {{"k", ArgType::Int, std::nullopt, 1.0, 1024.0, {}, "clusters"},
         {"max_iterations", ArgType::Int, Value::integer(300), 1.0, 10000.0, {}, "Lloyd iterations at most"},
         {"tolerance", ArgType::Float, Value::real(1e-4), 0.0, 1e300, {},
          "stop when no center moves by more than this, in squared distance"},
         {"seed", ArgType::Int, Value::integer(0), 0.0, 9223372036854775807.0, {}, "seeds the k-means++ draws"},
         {"feature_size", ArgType::Int, std::nullopt, 1.0, static_cast<double>(kMaxFeatures), {}, "numbers per line"},
         {"initial_centers", ArgType::String, Value::str(""), 0.0, static_cast<double>(1 << 20), {},
          "k CSV lines of feature_size numbers to start from in place of k-means++; empty: k-means++"}},
        {{"input_data", false, "CSV lines of feature_size numbers"}},
        {{"model_file", false, "the k centers, CSV"}, {"assignments", false, "each input line's cluster, 0..k-1"}},
        run_kmeans};
    return fn;
}

namespace {
const Registration registered_logistic_regression_train(logistic_regression_train());
const Registration registered_logistic_regression_predict(logistic_regression_predict());
const Registration registered_principal_components_analysis(principal_components_analysis());
const Registration registered_kmeans(kmeans());
}  // namespace

}  // namespace mesatee::functions
