// gbdt_train and gbdt_predict: Teaclave's gradient-boosted decision trees, under
// its names and arguments, trained the way histogram GBDTs are (LightGBM's way):
// each feature binned once into at most 255 quantile bins, trees grown depth-wise
// from per-node gradient/hessian histograms, the larger child's histogram
// obtained by subtracting the smaller child's from its parent's. Single-threaded
// and deterministic given the inputs and the seed. The model is mesatee's own
// versioned text format (docs/functions/gbdt.md), parsed strictly.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "functions/registry.hpp"
#include "functions/text.hpp"

namespace mesatee::functions {
namespace {

enum class Loss { SquaredError, LAD, LogLikelyhood };

constexpr const char* kLossNames[] = {"SquaredError", "LAD", "LogLikelyhood"};
constexpr size_t kMaxBins = 255;          // per feature, as LightGBM's max_bin
constexpr double kMinChildHessian = 1e-3;  // LogLikelyhood: each child's hessian sum (LightGBM's min_sum_hessian_in_leaf)
constexpr double kMinRelativeGain = 1e-10;  // a split must improve the objective by more than rounding noise
constexpr int64_t kMaxFeatures = 100000;
constexpr int64_t kMaxDepth = 20;
constexpr int64_t kMaxIterations = 10000;
constexpr size_t kMaxNodes = (size_t{1} << (kMaxDepth + 1)) - 1;
constexpr const char* kModelMagic = "mesatee-gbdt-model";
constexpr int64_t kModelVersion = 1;

Loss loss_of(const std::string& name) {
    for (size_t i = 0; i < 3; ++i)
        if (name == kLossNames[i]) return static_cast<Loss>(i);
    fail(MESATEE_ERROR_ARGUMENT_INVALID, "loss must be one of: SquaredError, LAD, LogLikelyhood");
}

// A split node sends x to `left` when x[feature] <= threshold; a leaf has feature -1 and adds `value`.
struct Node {
    int32_t feature = -1;
    uint32_t left = 0, right = 0;
    uint8_t bin = 0;  // training only: the threshold as a bin code (codes <= bin go left)
    double threshold = 0, value = 0;
};

struct Model {
    Loss loss = Loss::SquaredError;
    size_t features = 0;
    double initial = 0;
    std::vector<std::vector<Node>> trees;
};

std::string format_double(double v, std::chars_format format = std::chars_format::general, int precision = -1) {
    char buffer[400];  // fixed notation of the largest double with 10 decimals fits
    auto [end, ec] = precision < 0 ? std::to_chars(buffer, buffer + sizeof buffer, v)  // shortest round-trip form
                                   : std::to_chars(buffer, buffer + sizeof buffer, v, format, precision);
    if (ec != std::errc()) fail(MESATEE_ERROR_FUNCTION_FAILED, "a number could not be formatted");
    return std::string(buffer, end);
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// The median of values (the mean of the two middle ones for an even count); reorders values.
double median(std::vector<double>& values) {
    size_t mid = values.size() / 2;
    std::nth_element(values.begin(), values.begin() + mid, values.end());
    double upper = values[mid];
    if (values.size() % 2 == 1) return upper;
    double lower = *std::max_element(values.begin(), values.begin() + mid);
    return lower + (upper - lower) / 2;
}

// An unbiased draw in [0, bound) from the seeded generator (portable, unlike std::uniform_int_distribution).
uint64_t below(std::mt19937_64& rng, uint64_t bound) {
    uint64_t threshold = (0 - bound) % bound;
    while (true) {
        uint64_t x = rng();
        if (x >= threshold) return x % bound;
    }
}

// The first k of a seeded shuffle of `all`, in ascending order.
void sample(std::vector<uint32_t>& all, size_t k, std::mt19937_64& rng) {
    for (size_t i = 0; i < k; ++i) std::swap(all[i], all[i + below(rng, all.size() - i)]);
    all.resize(k);
    std::sort(all.begin(), all.end());
}

// ----------------------------------------------------------------------------- binning

// Every feature binned once: bin b of feature f holds the values <= cuts[f][b] (and above the previous
// cut); the last bin holds the rest. Cuts are midpoints between neighbouring distinct values, so a model
// holds raw thresholds. Codes are column-major: codes[f * n + row].
struct Binned {
    size_t n = 0, features = 0;
    std::vector<uint8_t> codes;
    std::vector<std::vector<double>> cuts;
    std::vector<size_t> offset;   // feature f's first histogram entry
    std::vector<uint32_t> usable;  // features with at least two bins
    size_t total_bins = 0;

    size_t bins(size_t f) const { return cuts[f].size() + 1; }
};

double midpoint(double a, double b) {  // a < b: a value m with a <= m < b
    double m = a + (b - a) / 2;
    return m < b && m >= a ? m : a;
}

// The rows of column f ordered by value, ascending: a stable LSD radix sort of the values' bits (made
// order-preserving), one byte a pass, skipping the bytes all values share. Fills keys and order.
class ColumnSorter {
public:
    explicit ColumnSorter(size_t n) : keys_(n), order_(n), keys2_(n), order2_(n) {}

    void sort(const Matrix& m, size_t f) {
        const size_t n = m.rows;
        size_t counts[8][256] = {};
        for (size_t i = 0; i < n; ++i) {
            double v = m(i, f);
            uint64_t bits;
            std::memcpy(&bits, &v, sizeof bits);
            uint64_t key = bits >> 63 ? ~bits : bits | (uint64_t{1} << 63);
            keys_[i] = key;
            order_[i] = static_cast<uint32_t>(i);
            for (int b = 0; b < 8; ++b) ++counts[b][(key >> (8 * b)) & 0xff];
        }
        for (int b = 0; b < 8; ++b) {
            if (n == 0 || counts[b][(keys_[0] >> (8 * b)) & 0xff] == n) continue;
            size_t at[256], sum = 0;
            for (int k = 0; k < 256; ++k) {
                at[k] = sum;
                sum += counts[b][k];
            }
            for (size_t i = 0; i < n; ++i) {
                size_t to = at[(keys_[i] >> (8 * b)) & 0xff]++;
                keys2_[to] = keys_[i];
                order2_[to] = order_[i];
            }
            keys_.swap(keys2_);
            order_.swap(order2_);
        }
    }
    double value(size_t k) const {  // the k-th smallest value
        uint64_t key = keys_[k], bits = key >> 63 ? key & ~(uint64_t{1} << 63) : ~key;
        double v;
        std::memcpy(&v, &bits, sizeof v);
        return v;
    }
    uint32_t row(size_t k) const { return order_[k]; }

private:
    std::vector<uint64_t> keys_;
    std::vector<uint32_t> order_;
    std::vector<uint64_t> keys2_;
    std::vector<uint32_t> order2_;
};

Binned bin_features(const Matrix& m, size_t features) {
    Binned d;
    d.n = m.rows;
    d.features = features;
    d.codes.resize(d.n * features);
    d.cuts.resize(features);
    d.offset.resize(features);
    ColumnSorter sorted(d.n);
    std::vector<double> distinct;
    std::vector<size_t> counts;
    distinct.reserve(d.n);
    counts.reserve(d.n);
    for (size_t f = 0; f < features; ++f) {
        sorted.sort(m, f);
        distinct.clear();
        counts.clear();
        for (size_t k = 0; k < d.n; ++k) {
            double v = sorted.value(k);
            if (distinct.empty() || v != distinct.back()) {  // -0.0 and 0.0 are one value
                distinct.push_back(v);
                counts.push_back(0);
            }
            ++counts.back();
        }
        std::vector<double>& cuts = d.cuts[f];
        if (distinct.size() <= kMaxBins) {
            for (size_t j = 0; j + 1 < distinct.size(); ++j) cuts.push_back(midpoint(distinct[j], distinct[j + 1]));
        } else {  // quantile bins: close bin k once the running count reaches (k + 1) n / kMaxBins
            size_t cumulative = 0, closed = 0;
            for (size_t j = 0; j + 1 < distinct.size() && closed + 1 < kMaxBins; ++j) {
                cumulative += counts[j];
                if (static_cast<double>(cumulative) * kMaxBins >= static_cast<double>(closed + 1) * d.n) {
                    cuts.push_back(midpoint(distinct[j], distinct[j + 1]));
                    closed = std::max(closed + 1, cumulative * kMaxBins / d.n);
                }
            }
        }
        // A value's code is the number of cuts below it (its bin holds the values <= cuts[code]).
        uint8_t* codes = d.codes.data() + f * d.n;
        size_t bin = 0;
        for (size_t k = 0; k < d.n; ++k) {
            double v = sorted.value(k);
            while (bin < cuts.size() && cuts[bin] < v) ++bin;
            codes[sorted.row(k)] = static_cast<uint8_t>(bin);
        }
        d.offset[f] = d.total_bins;
        d.total_bins += d.bins(f);
        if (d.bins(f) >= 2) d.usable.push_back(static_cast<uint32_t>(f));
    }
    return d;
}

// ----------------------------------------------------------------------------- training

struct Entry {
    double g = 0, h = 0, c = 0;  // sums of gradients, hessians (unused when the hessian is 1), rows
};

struct Sums {
    double g = 0, h = 0, c = 0;
};

struct Split {
    bool found = false;
    uint32_t feature = 0;
    uint8_t bin = 0;
    double score = 0;  // gL²/hL + gR²/hR
    Sums left;
};

struct Settings {
    Loss loss;
    size_t max_depth, iterations, min_leaf;
    double shrinkage, feature_ratio, data_ratio;
    uint64_t seed;
};

class Trainer {
public:
    Trainer(const Binned& data, std::vector<double> labels, const Settings& s)
        : d_(data), s_(s), y_(std::move(labels)), score_(d_.n), g_(d_.n), h_(d_.n, 1.0), og_(d_.n), oh_(d_.n),
          rows_(d_.n), scratch_(d_.n), pool_(s.max_depth + 2), rng_(s.seed) {}

    Model train() {
        Model model;
        model.loss = s_.loss;
        model.features = d_.features;
        model.initial = initial_prediction();
        check_finite(model.initial);
        std::fill(score_.begin(), score_.end(), model.initial);
        size_t in_bag = std::clamp<size_t>(static_cast<size_t>(std::llround(s_.data_ratio * d_.n)), 1, d_.n);
        size_t features = std::clamp<size_t>(static_cast<size_t>(std::llround(s_.feature_ratio * d_.usable.size())),
                                             std::min<size_t>(1, d_.usable.size()), d_.usable.size());
        std::vector<uint32_t> all_rows(d_.n);
        model.trees.reserve(s_.iterations);
        for (size_t t = 0; t < s_.iterations; ++t) {
            gradients();
            features_ = d_.usable;
            if (features < features_.size()) sample(features_, features, rng_);
            bool all = in_bag == d_.n;
            if (all) {
                for (size_t i = 0; i < d_.n; ++i) rows_[i] = static_cast<uint32_t>(i);
            } else {
                for (size_t i = 0; i < d_.n; ++i) all_rows[i] = static_cast<uint32_t>(i);
                sample(all_rows, in_bag, rng_);
                std::copy(all_rows.begin(), all_rows.end(), rows_.begin());
                all_rows.resize(d_.n);
            }
            model.trees.push_back(grow_tree(in_bag, all));
        }
        return model;
    }

private:
    double initial_prediction() {
        std::vector<double> y = y_;
        switch (s_.loss) {
            case Loss::SquaredError: {
                double mean = 0;  // running mean: no overflow of a sum
                for (size_t i = 0; i < y.size(); ++i) mean += (y[i] - mean) / static_cast<double>(i + 1);
                return mean;
            }
            case Loss::LAD: return median(y);
            case Loss::LogLikelyhood: {
                double positive = 0;
                for (double v : y) positive += v;
                double p = std::clamp(positive / static_cast<double>(y.size()), 1e-15, 1 - 1e-15);
                return std::log(p / (1 - p));
            }
        }
        return 0;
    }

    static void check_finite(double v) {
        if (!std::isfinite(v)) fail(MESATEE_ERROR_FUNCTION_FAILED, "training diverged: a value is not finite");
    }

    void gradients() {
        const size_t n = d_.n;
        switch (s_.loss) {
            case Loss::SquaredError:
                for (size_t i = 0; i < n; ++i) g_[i] = score_[i] - y_[i];
                break;
            case Loss::LAD:
                for (size_t i = 0; i < n; ++i) g_[i] = score_[i] > y_[i] ? 1.0 : score_[i] < y_[i] ? -1.0 : 0.0;
                break;
            case Loss::LogLikelyhood:
                for (size_t i = 0; i < n; ++i) {
                    double p = sigmoid(score_[i]);
                    g_[i] = p - y_[i];
                    h_[i] = p * (1 - p);
                }
                break;
        }
    }

    bool unit_hessian() const { return s_.loss != Loss::LogLikelyhood; }

    std::vector<Entry>& hist(size_t slot) {
        if (pool_[slot].empty()) pool_[slot].resize(d_.total_bins);
        return pool_[slot];
    }

    // Adds rows (row k's gradient g[k], hessian h[k]) to the histograms of features fs[0..kWidth): one pass
    // over the rows for several features, whose updates are independent of each other.
    template <bool kUnitHessian, bool kIdentity, size_t kWidth>
    void accumulate(const uint32_t* fs, const uint32_t* rows, size_t m, const double* g, const double* h, Entry* out) const {
        const uint8_t* col[kWidth];
        Entry* e[kWidth];
        for (size_t j = 0; j < kWidth; ++j) {
            col[j] = d_.codes.data() + fs[j] * d_.n;
            e[j] = out + d_.offset[fs[j]];
        }
        for (size_t k = 0; k < m; ++k) {
            const size_t r = kIdentity ? k : rows[k];
            const double gk = g[k];
            [[maybe_unused]] const double hk = kUnitHessian ? 0.0 : h[k];
            for (size_t j = 0; j < kWidth; ++j) {
                Entry& x = e[j][col[j][r]];
                x.g += gk;
                if constexpr (!kUnitHessian) x.h += hk;
                x.c += 1;
            }
        }
    }

    template <bool kUnitHessian, bool kIdentity>
    void build(const uint32_t* rows, size_t m, Entry* out) {
        const double* g = g_.data();
        const double* h = h_.data();
        if (!kIdentity) {
            for (size_t k = 0; k < m; ++k) og_[k] = g_[rows[k]];
            if constexpr (!kUnitHessian)
                for (size_t k = 0; k < m; ++k) oh_[k] = h_[rows[k]];
            g = og_.data();
            h = oh_.data();
        }
        for (uint32_t f : features_) std::fill(out + d_.offset[f], out + d_.offset[f] + d_.bins(f), Entry{});
        const uint32_t* fs = features_.data();
        size_t left = features_.size();
        for (; left >= 4; left -= 4, fs += 4) accumulate<kUnitHessian, kIdentity, 4>(fs, rows, m, g, h, out);
        for (; left > 0; --left, ++fs) accumulate<kUnitHessian, kIdentity, 1>(fs, rows, m, g, h, out);
    }

    // The histograms of the sampled features over rows_[begin, end); `identity`: those rows are 0..n-1.
    void build(size_t begin, size_t end, bool identity, Entry* out) {
        const uint32_t* rows = rows_.data() + begin;
        const size_t m = end - begin;
        if (unit_hessian()) identity ? build<true, true>(rows, m, out) : build<true, false>(rows, m, out);
        else identity ? build<false, true>(rows, m, out) : build<false, false>(rows, m, out);
    }

    void subtract(Entry* from, const Entry* part) const {
        for (uint32_t f : features_)
            for (size_t b = d_.offset[f], e = b + d_.bins(f); b < e; ++b) {
                from[b].g -= part[b].g;
                from[b].h -= part[b].h;
                from[b].c -= part[b].c;
            }
    }

    Split best_split(const Entry* hist, const Sums& total) const {
        const bool unit = unit_hessian();
        const double min_leaf = static_cast<double>(s_.min_leaf);
        Split best;
        for (uint32_t f : features_) {
            const Entry* e = hist + d_.offset[f];
            Sums left;
            for (size_t b = 0, last = d_.bins(f) - 1; b < last; ++b) {
                left.g += e[b].g;
                left.h += unit ? e[b].c : e[b].h;
                left.c += e[b].c;
                if (left.c < min_leaf) continue;
                double right_c = total.c - left.c, right_h = total.h - left.h;
                if (right_c < min_leaf) break;
                if (!unit && (left.h < kMinChildHessian || right_h < kMinChildHessian)) continue;
                if (left.h <= 0 || right_h <= 0) continue;
                double right_g = total.g - left.g;
                double score = left.g * left.g / left.h + right_g * right_g / right_h;
                if (score > best.score) {
                    best = Split{true, f, static_cast<uint8_t>(b), score, left};
                }
            }
        }
        double gain = best.score - (total.h > 0 ? total.g * total.g / total.h : 0);
        if (best.found && !(gain > kMinRelativeGain * best.score)) best.found = false;
        if (best.found) {
            // The cuts from best.bin up to the node's next non-empty bin split its rows alike: take the middle
            // one, so the threshold sits mid-gap between the node's values on either side (as exact trees do).
            const Entry* e = hist + d_.offset[best.feature];
            size_t last = best.bin;
            while (last + 2 < d_.bins(best.feature) && e[last + 1].c == 0) ++last;
            best.bin = static_cast<uint8_t>(best.bin + (last - best.bin) / 2);
        }
        return best;
    }

    struct Leaf {
        uint32_t node;
        size_t begin, end;
    };

    std::vector<Node> grow_tree(size_t in_bag, bool all) {
        tree_.clear();
        leaves_.clear();
        tree_.emplace_back();
        Sums total;
        for (size_t k = 0; k < in_bag; ++k) {
            uint32_t r = rows_[k];
            total.g += g_[r];
            total.h += h_[r];
            total.c += 1;
        }
        if (unit_hessian()) total.h = total.c;
        bool splittable = s_.max_depth > 0 && total.c >= 2.0 * static_cast<double>(s_.min_leaf) && !features_.empty();
        if (splittable) build(0, in_bag, all, hist(0).data());
        grow(0, 0, in_bag, 0, 0, total, splittable);

        // Leaf values, then the scores of every row.
        std::vector<double> residuals;
        for (const Leaf& leaf : leaves_) {
            Node& node = tree_[leaf.node];
            double value = 0;
            if (s_.loss == Loss::LAD) {
                residuals.clear();
                for (size_t k = leaf.begin; k < leaf.end; ++k) residuals.push_back(y_[rows_[k]] - score_[rows_[k]]);
                value = median(residuals);
            } else {
                Sums sums;
                for (size_t k = leaf.begin; k < leaf.end; ++k) {
                    sums.g += g_[rows_[k]];
                    sums.h += h_[rows_[k]];
                }
                value = -sums.g / (sums.h + 1e-15);
            }
            node.value = value * s_.shrinkage;
            check_finite(node.value);
        }
        if (all) {
            for (const Leaf& leaf : leaves_) {
                double value = tree_[leaf.node].value;
                for (size_t k = leaf.begin; k < leaf.end; ++k) score_[rows_[k]] += value;
            }
        } else {
            for (size_t i = 0; i < d_.n; ++i) {
                uint32_t at = 0;
                while (tree_[at].feature >= 0) {
                    const Node& s = tree_[at];
                    at = d_.codes[static_cast<size_t>(s.feature) * d_.n + i] <= s.bin ? s.left : s.right;
                }
                score_[i] += tree_[at].value;
            }
        }
        return tree_;
    }

    // Node `at` holds rows_[begin, end); its histogram (when `splittable`) is in pool slot `slot`.
    void grow(uint32_t at, size_t begin, size_t end, size_t depth, size_t slot, const Sums& total, bool splittable) {
        Split split;
        if (splittable) split = best_split(hist(slot).data(), total);
        if (!split.found) {
            leaves_.push_back(Leaf{at, begin, end});
            return;
        }
        // Stable partition: left rows stay in rows_, right rows go through scratch_.
        const uint8_t* col = d_.codes.data() + split.feature * d_.n;
        size_t w = begin, s = 0;
        for (size_t k = begin; k < end; ++k) {
            uint32_t r = rows_[k];
            if (col[r] <= split.bin) rows_[w++] = r;
            else scratch_[s++] = r;
        }
        std::copy(scratch_.begin(), scratch_.begin() + s, rows_.begin() + w);
        const size_t mid = w;

        Sums left = split.left, right{total.g - left.g, total.h - left.h, total.c - left.c};
        uint32_t l = static_cast<uint32_t>(tree_.size()), r = l + 1;
        Node& node = tree_[at];
        node.feature = static_cast<int32_t>(split.feature);
        node.bin = split.bin;
        node.threshold = d_.cuts[split.feature][split.bin];
        node.left = l;
        node.right = r;
        tree_.emplace_back();
        tree_.emplace_back();

        const double need = 2.0 * static_cast<double>(s_.min_leaf);
        bool deeper = depth + 1 < s_.max_depth;
        bool left_splittable = deeper && left.c >= need, right_splittable = deeper && right.c >= need;
        bool left_smaller = mid - begin <= end - mid;
        if (left_splittable || right_splittable) {
            // The smaller child's histogram is built (slot + 1); the larger's is its parent's minus it (slot).
            Entry* parent = hist(slot).data();
            Entry* small = hist(slot + 1).data();
            if (left_smaller) build(begin, mid, false, small);
            else build(mid, end, false, small);
            subtract(parent, small);
        }
        // The smaller child first: its subtree uses the slots above slot + 1 and leaves `slot` intact.
        if (left_smaller) {
            grow(l, begin, mid, depth + 1, slot + 1, left, left_splittable);
            grow(r, mid, end, depth + 1, slot, right, right_splittable);
        } else {
            grow(r, mid, end, depth + 1, slot + 1, right, right_splittable);
            grow(l, begin, mid, depth + 1, slot, left, left_splittable);
        }
    }

    const Binned& d_;
    const Settings s_;
    std::vector<double> y_, score_, g_, h_, og_, oh_;
    std::vector<uint32_t> rows_, scratch_, features_;
    std::vector<std::vector<Entry>> pool_;
    std::vector<Node> tree_;
    std::vector<Leaf> leaves_;
    std::mt19937_64 rng_;
};

// ----------------------------------------------------------------------------- the model format

std::string write_model(const Model& model) {
    std::string out;
    out += std::string(kModelMagic) + " " + std::to_string(kModelVersion) + "\n";
    out += std::string("loss ") + kLossNames[static_cast<int>(model.loss)] + "\n";
    out += "feature_size " + std::to_string(model.features) + "\n";
    out += "initial_prediction " + format_double(model.initial) + "\n";
    out += "trees " + std::to_string(model.trees.size()) + "\n";
    for (const auto& tree : model.trees) {
        out += "tree " + std::to_string(tree.size()) + "\n";
        for (const Node& node : tree) {
            if (node.feature < 0) {
                out += "leaf " + format_double(node.value) + "\n";
            } else {
                out += "split " + std::to_string(node.feature) + " " + format_double(node.threshold) + " " +
                       std::to_string(node.left) + " " + std::to_string(node.right) + "\n";
            }
        }
    }
    out += "end\n";
    return out;
}

class ModelReader {
public:
    explicit ModelReader(const Bytes& input) : lines_(lines(input, kSlot)) {}

    // The fields of the next line, which must be `key` followed by `values` fields.
    std::vector<std::string_view> next(const std::string& key, size_t values) {
        if (at_ == lines_.size()) bad_line(kSlot, at_ + 1, "the model ends early (expected " + key + ")");
        std::vector<std::string_view> fields = split(lines_[at_++], ' ');
        if (fields[0] != key) bad_line(kSlot, at_, "expected " + key);
        if (fields.size() != values + 1)
            bad_line(kSlot, at_, key + " takes " + std::to_string(values) + " value" + (values == 1 ? "" : "s"));
        return fields;
    }
    // The next line is a node: "split ..." or "leaf ...".
    std::vector<std::string_view> node() {
        if (at_ == lines_.size()) bad_line(kSlot, at_ + 1, "the model ends early (expected a node)");
        std::vector<std::string_view> fields = split(lines_[at_++], ' ');
        size_t expected = fields[0] == "split" ? 5 : fields[0] == "leaf" ? 2 : 0;
        if (expected == 0) bad_line(kSlot, at_, "expected split or leaf");
        if (fields.size() != expected) bad_line(kSlot, at_, std::string(fields[0]) + " takes " + std::to_string(expected - 1) + " values");
        return fields;
    }
    uint64_t integer(std::string_view field, size_t column, uint64_t min, uint64_t max) const {
        uint64_t v = 0;
        auto [ptr, ec] = std::from_chars(field.data(), field.data() + field.size(), v);
        if (field.empty() || ec != std::errc() || ptr != field.data() + field.size() || v < min || v > max)
            bad_line(kSlot, at_, "column " + std::to_string(column) + " must be an integer from " + std::to_string(min) +
                                     " to " + std::to_string(max));
        return v;
    }
    double real(std::string_view field, size_t column) const { return number(field, kSlot, at_, column); }
    std::string_view peek() const { return lines_[at_]; }  // lines() refuses an empty input
    size_t line() const { return at_; }
    size_t remaining() const { return lines_.size() - at_; }

    static constexpr const char* kSlot = "model_file";

private:
    std::vector<std::string_view> lines_;
    size_t at_ = 0;
};

Model read_model(const Bytes& input) {
    ModelReader in(input);
    Model model;
    {  // line 1: the format and its version
        std::vector<std::string_view> f = split(in.peek(), ' ');
        if (f[0] != kModelMagic) bad_line(ModelReader::kSlot, 1, std::string("not a ") + kModelMagic);
        f = in.next(kModelMagic, 1);
        if (f[1] != std::to_string(kModelVersion))
            bad_line(ModelReader::kSlot, 1, "unsupported model version (this enclave reads version " +
                                                std::to_string(kModelVersion) + ")");
    }
    {
        auto f = in.next("loss", 1);
        bool known = false;
        for (size_t i = 0; i < 3; ++i)
            if (f[1] == kLossNames[i]) {
                model.loss = static_cast<Loss>(i);
                known = true;
            }
        if (!known) bad_line(ModelReader::kSlot, in.line(), "loss must be SquaredError, LAD or LogLikelyhood");
    }
    model.features = in.integer(in.next("feature_size", 1)[1], 2, 1, kMaxFeatures);
    model.initial = in.real(in.next("initial_prediction", 1)[1], 2);
    size_t trees = in.integer(in.next("trees", 1)[1], 2, 1, kMaxIterations);
    model.trees.resize(trees);
    std::vector<uint8_t> depth;
    for (auto& tree : model.trees) {
        size_t nodes = in.integer(in.next("tree", 1)[1], 2, 1, kMaxNodes);
        if (nodes > in.remaining()) bad_line(ModelReader::kSlot, in.line(), "the tree has more nodes than the model has lines");
        tree.resize(nodes);
        depth.assign(nodes, 0);
        std::vector<bool> referenced(nodes, false);
        size_t splits = 0;
        for (size_t i = 0; i < nodes; ++i) {
            auto f = in.node();
            Node& node = tree[i];
            if (f[0] == "leaf") {
                node.value = in.real(f[1], 2);
                continue;
            }
            if (depth[i] >= kMaxDepth) bad_line(ModelReader::kSlot, in.line(), "the tree is deeper than " + std::to_string(kMaxDepth));
            node.feature = static_cast<int32_t>(in.integer(f[1], 2, 0, model.features - 1));
            node.threshold = in.real(f[2], 3);
            node.left = static_cast<uint32_t>(in.integer(f[3], 4, i + 1, nodes - 1));
            node.right = static_cast<uint32_t>(in.integer(f[4], 5, i + 1, nodes - 1));
            for (uint32_t child : {node.left, node.right}) {
                if (referenced[child] || node.left == node.right)
                    bad_line(ModelReader::kSlot, in.line(), "a node is the child of more than one split");
                referenced[child] = true;
                depth[child] = static_cast<uint8_t>(depth[i] + 1);
            }
            ++splits;
        }
        if (2 * splits + 1 != nodes) bad_line(ModelReader::kSlot, in.line(), "the tree's nodes are not all reachable");
    }
    in.next("end", 0);  // so that a truncated model is refused
    if (in.remaining() != 0) bad_line(ModelReader::kSlot, in.line() + 1, "unexpected line after the end");
    return model;
}

// ----------------------------------------------------------------------------- the functions


Bytes run_gbdt_train(const Arguments& args, const Inputs& inputs, Outputs& outputs) {
    for (const char* ratio : {"shrinkage", "feature_sample_ratio", "data_sample_ratio"})
        if (!(args.number(ratio) > 0))
            fail(MESATEE_ERROR_ARGUMENT_INVALID, std::string("gbdt_train: argument ") + ratio + " must be greater than 0");
    Settings s{loss_of(args.str("loss")),
               static_cast<size_t>(args.integer("max_depth")),
               static_cast<size_t>(args.integer("iterations")),
               static_cast<size_t>(args.integer("min_leaf_size")),
               args.number("shrinkage"),
               args.number("feature_sample_ratio"),
               args.number("data_sample_ratio"),
               static_cast<uint64_t>(args.integer("seed"))};
    const size_t features = static_cast<size_t>(args.integer("feature_size"));
    const std::string slot = "training_data";
    Matrix m = parse_matrix(inputs.at(slot), slot, features + 1);
    if (m.rows > std::numeric_limits<uint32_t>::max()) fail(MESATEE_ERROR_FUNCTION_FAILED, "too many rows");
    std::vector<double> labels(m.rows);
    for (size_t i = 0; i < m.rows; ++i) {
        double y = m(i, features);
        if (s.loss == Loss::LogLikelyhood) {
            if (y != 1 && y != 0 && y != -1) bad_line(slot, i + 1, "the label must be 1, 0 or -1 for LogLikelyhood");
            y = y == 1 ? 1 : 0;
        }
        labels[i] = y;
    }
    const size_t rows = m.rows;
    Model model;
    {
        Binned data = bin_features(m, features);
        m = Matrix();
        model = Trainer(data, std::move(labels), s).train();
    }
    outputs["trained_model"] = text_bytes(write_model(model));
    return text_bytes("Trained " + std::to_string(rows) + " lines of data.");
}

Bytes run_gbdt_predict(const Arguments&, const Inputs& inputs, Outputs& outputs) {
    Model model = read_model(inputs.at("model_file"));
    Matrix m = parse_matrix(inputs.at("data_file"), "data_file", model.features);
    std::string out;
    out.reserve(m.rows * 16);
    for (size_t i = 0; i < m.rows; ++i) {
        const double* x = m.values.data() + i * m.cols;
        double score = model.initial;
        for (const auto& tree : model.trees) {
            uint32_t at = 0;
            while (tree[at].feature >= 0) at = x[tree[at].feature] <= tree[at].threshold ? tree[at].left : tree[at].right;
            score += tree[at].value;
        }
        double prediction = model.loss == Loss::LogLikelyhood ? sigmoid(score) : score;
        if (!std::isfinite(prediction)) fail(MESATEE_ERROR_FUNCTION_FAILED, "a prediction is not finite");
        out += format_double(prediction, std::chars_format::fixed, 10);
        out += '\n';
    }
    outputs["result_file"] = text_bytes(out);
    return text_bytes("Predict result has " + std::to_string(m.rows) + " lines of data.");
}

}  // namespace

const Function& gbdt_train() {
    static const Function fn{
        "gbdt_train", 1,
        "Trains gradient-boosted decision trees (histogram-based) on CSV rows of feature_size features then a label.",
        {{"feature_size", ArgType::Int, std::nullopt, 1.0, double(kMaxFeatures), {}, "features per line, before the label"},
         {"max_depth", ArgType::Int, std::nullopt, 1.0, double(kMaxDepth), {}, "levels of splits in each tree"},
         {"iterations", ArgType::Int, std::nullopt, 1.0, double(kMaxIterations), {}, "number of trees"},
         {"shrinkage", ArgType::Float, std::nullopt, 0.0, 1.0, {}, "learning rate, in (0, 1]"},
         {"feature_sample_ratio", ArgType::Float, std::nullopt, 0.0, 1.0, {},
          "share of the features each tree may split on, in (0, 1]"},
         {"data_sample_ratio", ArgType::Float, std::nullopt, 0.0, 1.0, {},
          "share of the rows each tree is grown from (drawn without replacement), in (0, 1]"},
         {"min_leaf_size", ArgType::Int, std::nullopt, 1.0, 1e9, {}, "fewest training rows in a leaf"},
         {"loss", ArgType::String, std::nullopt, std::nullopt, std::nullopt, {"SquaredError", "LAD", "LogLikelyhood"},
          "SquaredError, LAD (absolute error) or LogLikelyhood (binary labels 1 and 0 or -1)"},
         {"training_optimization_level", ArgType::Int, msgpack::Value::integer(2), 0.0, 2.0, {},
          "accepted for Teaclave compatibility; training is always histogram-based"},
         {"seed", ArgType::Int, msgpack::Value::integer(0), 0.0, 9223372036854775807.0, {},
          "seeds the row and feature sampling"}},
        {{"training_data", false, "CSV: feature_size features then the label, per line"}},
        {{"trained_model", false, "the model, mesatee-gbdt-model version 1 text"}},
        run_gbdt_train};
    return fn;
}

const Function& gbdt_predict() {
    static const Function fn{
        "gbdt_predict", 1, "Predicts with a gbdt_train model: one value per line of CSV features.",
        {},
        {{"model_file", false, "a model made by gbdt_train"}, {"data_file", false, "CSV: the model's features per line"}},
        {{"result_file", false, "one prediction per line, 10 decimals"}},
        run_gbdt_predict};
    return fn;
}

namespace {
const Registration registered_gbdt_train(gbdt_train());
const Registration registered_gbdt_predict(gbdt_predict());
}  // namespace

}  // namespace mesatee::functions
