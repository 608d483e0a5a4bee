// The numeric cores of the learning built-ins (learning.cpp): logistic
// regression (Teaclave's gradient descent, and L-BFGS), principal components
// and k-means. Plain C++ over contiguous row-major doubles; exposed for the
// native benchmarks (tests/native/probe.cpp), used by the functions in learning.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mesatee::functions::learning {

// A row-major table: row i starts at data + i * stride; the first `cols` values of a row are used.
struct Rows {
    const double* data;
    size_t rows, cols, stride;
    const double* row(size_t i) const { return data + i * stride; }
};

// Logistic regression on features x (no intercept column) and 0/1 labels y.
// The parameters are [intercept, w_1..w_d]; the objective is
//     J(b) = (1/m) sum_i [log(1 + exp(z_i)) - y_i z_i] + (l2/2) sum_{j>=1} b_j^2,   z_i = b_0 + x_i . w.
// Gradient descent is Teaclave's (rusty-machine's GradientDesc): every parameter starts at 0.5,
// then `iters` times b <- b - alpha * grad J(b).
std::vector<double> logistic_gd(const Rows& x, const double* y, size_t y_stride, double alpha, int64_t iters, double l2);
// 1 / (1 + e^-z_i) as the gradient computes it (branch-free, four at a time): within 2.5 ulp of the exact value
// for |z_i| <= 708, and within 1e-307 of 0 or 1 beyond.
void sigmoid_values(const double* z, double* out, size_t n);
// L-BFGS from b = 0 (memory 10, backtracking Armijo line search): stops when max |grad J| <= tolerance,
// when no step decreases J, or after max_iters iterations.
std::vector<double> logistic_lbfgs(const Rows& x, const double* y, size_t y_stride, int64_t max_iters, double l2,
                                   double tolerance);
// The objective J above and its gradient, in one pass over the rows.
double logistic_objective(const Rows& x, const double* y, size_t y_stride, const double* b, double l2, double* gradient);

// PCA: the top n eigenvectors of X'X (X centered when `center`), each signed so that its entry of largest
// magnitude (the first of equal ones) is positive; returns the projected rows, row-major m x n.
std::vector<double> pca_transform(const Rows& x, size_t n, bool center);

struct KMeansResult {
    std::vector<double> centers;        // k x d, row-major
    std::vector<uint32_t> assignments;  // one per row
    int64_t iterations = 0;             // Lloyd iterations run
};
// Lloyd's k-means from `initial` (k x d) or, when it is null, k-means++ seeding from `seed`.
KMeansResult kmeans(const Rows& x, size_t k, int64_t max_iterations, double tolerance, uint64_t seed,
                    const double* initial);

}  // namespace mesatee::functions::learning
