// One 1D lifting step of LiftDownPool2d, forward and backward, fused over each (n, c) image plane.
//
// The step along an axis of even length L = 2M splits the plane into even and odd lines xe[i], xo[i] (i < M) and
// computes, with P and U the lifting functions tanh(a * relu(conv_K(reflect_pad(t), w))):
//
//     d = xo - P(xe)          (detail)
//     s = xe + U(d)           (approximation)
//
// plus the two sums of squares the auxiliary loss needs: sum (s - xo)^2 and sum d^2. Lines are processed as whole
// rows of the plane (vectors of V values), so the K-tap filter along the lifted axis is a sum of K row vectors and
// every inner loop runs over contiguous memory; along W each row is one line, its even and odd samples
// de-interleaved into small buffers. The backward recomputes the step's cheap intermediates from the input instead
// of storing them, then runs the chain rule back through U and P.
//
// Built by robustbench_lift/layers/kernel.py as a plain shared library (no torch headers) and called with ctypes.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// tanh for float: 1 - 2 / (exp(2z) + 1) with a polynomial exp (range reduction by ln 2, degree-6 polynomial), so
// loops over it vectorise; |error| < 1e-6 against std::tanh. NaN stays NaN.
inline float tanh_approx(float z) {
  float c = z < -9.0f ? -9.0f : (z > 9.0f ? 9.0f : z);
  float x = 2.0f * c;
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float r2 = r * r;
  float poly = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
                1.6666665459e-1f) * r + 5.0000001201e-1f;
  float e = poly * r2 + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  float t = 1.0f - 2.0f / (e * scale + 1.0f);
  return z != z ? z : t;
}

inline float act_tanh(float z) { return tanh_approx(z); }
inline double act_tanh(double z) { return std::tanh(z); }

// Index of padded sample i of a reflect-padded line of length m (valid for -m < i < 2m - 1).
inline int64_t reflect(int64_t i, int64_t m) { return i < 0 ? -i : (i >= m ? 2 * (m - 1) - i : i); }

// acc[v] = sum_j w[j] * line(reflect(i + j - p))[v], line(q) = base + q * stride.
template <class T>
inline void filter_row(T* acc, const T* base, int64_t stride, int64_t i, int64_t m, int64_t v_len, const T* w,
                       int k) {
  const int p = k / 2;
  std::fill(acc, acc + v_len, T(0));
  for (int j = 0; j < k; ++j) {
    const T* row = base + reflect(i + j - p, m) * stride;
    const T wj = w[j];
#pragma omp simd
    for (int64_t v = 0; v < v_len; ++v) acc[v] += wj * row[v];
  }
}

// The transpose of filter_row for output line i: adds the taps' gradients (per lane, lanes[j * V + v]) and the
// gradient reaching each padded input line, gsrc(q) += g * w[j], q = reflect(i + j - p).
template <class T>
inline void filter_row_grad(const T* g, const T* src, T* gsrc, int64_t stride, int64_t i, int64_t m, int64_t v_len,
                            const T* w, int k, T* lanes) {
  const int p = k / 2;
  for (int j = 0; j < k; ++j) {
    const int64_t q = reflect(i + j - p, m);
    const T* sq = src + q * stride;
    T* gq = gsrc + q * stride;
    T* lw = lanes + j * v_len;
    const T wj = w[j];
#pragma GCC ivdep
    for (int64_t v = 0; v < v_len; ++v) {
      lw[v] += g[v] * sq[v];
      gq[v] += g[v] * wj;
    }
  }
}

// Sum of v[0 .. n) in double (the per-lane partial sums below keep the inner loops free of reductions, which the
// compiler would otherwise not vectorise without reassociating float sums).
template <class T>
inline double total(const T* v, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += v[i];
  return sum;
}

// Forward of one plane as M lines of V values: even line i at xe + i * rs, odd at xo + i * rs; d and s are M x V.
// work: 3 * V values.
template <class T>
void plane_forward(const T* xe, const T* xo, int64_t rs, T* d, T* s, int64_t m, int64_t v_len, int k, const T* wp,
                   T ap, const T* wu, T au, T* work, double* sq_u, double* sq_p) {
  T* acc = work;
  T* lane_p = acc + v_len;
  T* lane_u = lane_p + v_len;
  std::fill(lane_p, lane_p + 2 * v_len, T(0));
#pragma GCC ivdep
  for (int64_t i = 0; i < m; ++i) {  // d = xo - P(xe)
    filter_row(acc, xe, rs, i, m, v_len, wp, k);
    const T* o = xo + i * rs;
    T* di = d + i * v_len;
#pragma GCC ivdep
    for (int64_t v = 0; v < v_len; ++v) {
      T dv = o[v] - act_tanh(ap * std::max(acc[v], T(0)));
      di[v] = dv;
      lane_p[v] += dv * dv;
    }
  }
#pragma GCC ivdep
  for (int64_t i = 0; i < m; ++i) {  // s = xe + U(d)
    filter_row(acc, d, v_len, i, m, v_len, wu, k);
    const T* e = xe + i * rs;
    const T* o = xo + i * rs;
    T* si = s + i * v_len;
#pragma GCC ivdep
    for (int64_t v = 0; v < v_len; ++v) {
      T sv = e[v] + act_tanh(au * std::max(acc[v], T(0)));
      si[v] = sv;
      lane_u[v] += (sv - o[v]) * (sv - o[v]);
    }
  }
  *sq_u = total(lane_u, v_len);
  *sq_p = total(lane_p, v_len);
}

// Backward of one plane (same layout as plane_forward). gs, gd: gradients of s and d (M x V); glu, glp: gradients
// of the two sums of squares. Writes the input gradient lines gxe, gxo (stride rs) and the plane's weight gradients
// gwp[K], gap, gwu[K], gau. work: 5 * M * V + (2K + 2) * V values.
template <class T>
void plane_backward(const T* xe, const T* xo, int64_t rs, const T* gs, const T* gd, T glu, T glp, T* gxe, T* gxo,
                    int64_t m, int64_t v_len, int k, const T* wp, T ap, const T* wu, T au, T* work, double* gwp,
                    double* gap, double* gwu, double* gau) {
  const int64_t n = m * v_len;
  T* hp = work;  // P's and U's filter outputs (pre-ReLU), d, the gradient at the filter outputs and at d
  T* hu = hp + n;
  T* dd = hu + n;
  T* gh = dd + n;
  T* g_d = gh + n;
  T* lane = g_d + n;  // per-lane partial sums: wp taps (K rows), ap, wu taps (K rows), au
  T* lane_wp = lane;
  T* lane_ap = lane_wp + k * v_len;
  T* lane_wu = lane_ap + v_len;
  T* lane_au = lane_wu + k * v_len;
  std::fill(lane, lane + (2 * k + 2) * v_len, T(0));
  // Recompute the forward's filter outputs and d.
#pragma GCC ivdep
  for (int64_t i = 0; i < m; ++i) {
    filter_row(hp + i * v_len, xe, rs, i, m, v_len, wp, k);
    const T* o = xo + i * rs;
    const T* h = hp + i * v_len;
    T* di = dd + i * v_len;
#pragma GCC ivdep
    for (int64_t v = 0; v < v_len; ++v) di[v] = o[v] - act_tanh(ap * std::max(h[v], T(0)));
  }
#pragma GCC ivdep
  for (int64_t i = 0; i < m; ++i) filter_row(hu + i * v_len, dd, v_len, i, m, v_len, wu, k);
  // Through s = xe + tanh(au * relu(hu)) and the loss terms.
#pragma GCC ivdep
  for (int64_t i = 0; i < m; ++i) {
    const T *e = xe + i * rs, *o = xo + i * rs, *h = hu + i * v_len, *gsi = gs + i * v_len, *gdi = gd + i * v_len,
            *di = dd + i * v_len;
    T *ge = gxe + i * rs, *go = gxo + i * rs, *ghi = gh + i * v_len, *gdt = g_d + i * v_len;
#pragma GCC ivdep
    for (int64_t v = 0; v < v_len; ++v) {
      T r = std::max(h[v], T(0));
      T t = act_tanh(au * r);
      T res = e[v] + t - o[v];
      T g = gsi[v] + 2 * glu * res;
      ge[v] = g;
      go[v] = -2 * glu * res;
      T gz = g * (1 - t * t);
      lane_au[v] += gz * r;
      ghi[v] = h[v] > 0 ? gz * au : T(0);
      gdt[v] = gdi[v] + 2 * glp * di[v];
    }
  }
  // Through U's filter: taps and the gradient reaching d.
  for (int64_t i = 0; i < m; ++i) filter_row_grad(gh + i * v_len, dd, g_d, v_len, i, m, v_len, wu, k, lane_wu);
  // Through d = xo - tanh(ap * relu(hp)).
#pragma GCC ivdep
  for (int64_t i = 0; i < m; ++i) {
    const T *h = hp + i * v_len, *gdt = g_d + i * v_len;
    T *go = gxo + i * rs, *ghi = gh + i * v_len;
#pragma GCC ivdep
    for (int64_t v = 0; v < v_len; ++v) {
      T g = gdt[v];
      go[v] += g;
      T r = std::max(h[v], T(0));
      T t = act_tanh(ap * r);
      T gz = -g * (1 - t * t);
      lane_ap[v] += gz * r;
      ghi[v] = h[v] > 0 ? gz * ap : T(0);
    }
  }
  // Through P's filter: taps and the gradient reaching xe.
  for (int64_t i = 0; i < m; ++i) filter_row_grad(gh + i * v_len, xe, gxe, rs, i, m, v_len, wp, k, lane_wp);
  for (int j = 0; j < k; ++j) {
    gwp[j] = total(lane_wp + j * v_len, v_len);
    gwu[j] = total(lane_wu + j * v_len, v_len);
  }
  *gap = total(lane_ap, v_len);
  *gau = total(lane_au, v_len);
}

// Along W, each row of the plane is one line: its even and odd samples are de-interleaved into buffers (the even
// ones and d with their reflect padding written out), so the K-tap filter again runs over contiguous memory.
template <class T>
inline void pad_line(T* t, int64_t m, int p) {  // t[p .. p + m) holds the line; fill the mirrored borders
  for (int q = 1; q <= p; ++q) {
    t[p - q] = t[p + q];
    t[p + m - 1 + q] = t[p + m - 1 - q];
  }
}

template <class T>
inline void fold_line(T* g, int64_t m, int p) {  // the transpose of pad_line: add border gradients to their sources
  for (int q = 1; q <= p; ++q) {
    g[p + q] += g[p - q];
    g[p + m - 1 - q] += g[p + m - 1 + q];
  }
}

template <class T>
inline void filter_line(T* acc, const T* padded, int64_t m, const T* w, int k) {
  std::fill(acc, acc + m, T(0));
  for (int j = 0; j < k; ++j) {
    const T wj = w[j];
    const T* src = padded + j;
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) acc[i] += wj * src[i];
  }
}

// The transpose of filter_line: taps' gradients per position (lanes[j * M + i]) and the gradient reaching the
// padded line (gpadded[i + j] += g[i] * w[j]; fold_line then adds its borders to their sources).
template <class T>
inline void filter_line_grad(const T* g, const T* padded, T* gpadded, int64_t m, const T* w, int k, T* lanes) {
  for (int j = 0; j < k; ++j) {
    const T wj = w[j];
    const T* src = padded + j;
    T* gsrc = gpadded + j;
    T* lw = lanes + j * m;
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) {
      lw[i] += g[i] * src[i];
      gsrc[i] += g[i] * wj;
    }
  }
}

// Forward of one plane along W: x is rows x 2M, d and s rows x M. work: 6 * M + 4p values.
template <class T>
void rows_forward(const T* x, T* d, T* s, int64_t rows, int64_t m, int k, const T* wp, T ap, const T* wu, T au,
                  T* work, double* sq_u, double* sq_p) {
  const int p = k / 2;
  const int64_t mp = m + 2 * p;
  T *e = work, *o = e + mp, *dp = o + m, *acc = dp + mp, *lane_p = acc + m, *lane_u = lane_p + m;
  std::fill(lane_p, lane_p + 2 * m, T(0));
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * 2 * m;
    T *dr = d + r * m, *sr = s + r * m;
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) {
      e[p + i] = xr[2 * i];
      o[i] = xr[2 * i + 1];
    }
    pad_line(e, m, p);
    filter_line(acc, e, m, wp, k);  // d = xo - P(xe)
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) {
      T dv = o[i] - act_tanh(ap * std::max(acc[i], T(0)));
      dp[p + i] = dv;
      dr[i] = dv;
      lane_p[i] += dv * dv;
    }
    pad_line(dp, m, p);
    filter_line(acc, dp, m, wu, k);  // s = xe + U(d)
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) {
      T sv = e[p + i] + act_tanh(au * std::max(acc[i], T(0)));
      sr[i] = sv;
      lane_u[i] += (sv - o[i]) * (sv - o[i]);
    }
  }
  *sq_u = total(lane_u, m);
  *sq_p = total(lane_p, m);
}

// Backward of one plane along W (layout of rows_forward); the same chain rule as plane_backward, line by line.
// work: (2K + 11) * M + 8p values.
template <class T>
void rows_backward(const T* x, const T* gs, const T* gd, T glu, T glp, T* gx, int64_t rows, int64_t m, int k,
                   const T* wp, T ap, const T* wu, T au, T* work, double* gwp, double* gap, double* gwu,
                   double* gau) {
  const int p = k / 2;
  const int64_t mp = m + 2 * p;
  T *e = work, *o = e + mp, *dp = o + m, *hp = dp + mp, *hu = hp + m, *gh = hu + m, *gdp = gh + m, *gep = gdp + mp,
    *gxo = gep + mp;
  T *lane_wp = gxo + m, *lane_ap = lane_wp + k * m, *lane_wu = lane_ap + m, *lane_au = lane_wu + k * m;
  std::fill(lane_wp, lane_wp + (2 * k + 2) * m, T(0));
  for (int64_t r = 0; r < rows; ++r) {
    const T *xr = x + r * 2 * m, *gsr = gs + r * m, *gdr = gd + r * m;
    T* gxr = gx + r * 2 * m;
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) {
      e[p + i] = xr[2 * i];
      o[i] = xr[2 * i + 1];
    }
    pad_line(e, m, p);
    filter_line(hp, e, m, wp, k);
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) dp[p + i] = o[i] - act_tanh(ap * std::max(hp[i], T(0)));
    pad_line(dp, m, p);
    filter_line(hu, dp, m, wu, k);
    // Through s = xe + tanh(au * relu(hu)) and the loss terms.
    std::fill(gdp, gdp + mp, T(0));
    std::fill(gep, gep + mp, T(0));
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) {
      T rr = std::max(hu[i], T(0));
      T t = act_tanh(au * rr);
      T res = e[p + i] + t - o[i];
      T g = gsr[i] + 2 * glu * res;
      gep[p + i] = g;
      gxo[i] = -2 * glu * res;
      T gz = g * (1 - t * t);
      lane_au[i] += gz * rr;
      gh[i] = hu[i] > 0 ? gz * au : T(0);
      gdp[p + i] = gdr[i] + 2 * glp * dp[p + i];
    }
    filter_line_grad(gh, dp, gdp, m, wu, k, lane_wu);  // through U's filter
    fold_line(gdp, m, p);
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) {  // through d = xo - tanh(ap * relu(hp))
      T g = gdp[p + i];
      gxo[i] += g;
      T rr = std::max(hp[i], T(0));
      T t = act_tanh(ap * rr);
      T gz = -g * (1 - t * t);
      lane_ap[i] += gz * rr;
      gh[i] = hp[i] > 0 ? gz * ap : T(0);
    }
    filter_line_grad(gh, e, gep, m, wp, k, lane_wp);  // through P's filter
    fold_line(gep, m, p);
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) {
      gxr[2 * i] = gep[p + i];
      gxr[2 * i + 1] = gxo[i];
    }
  }
  for (int j = 0; j < k; ++j) {
    gwp[j] = total(lane_wp + j * m, m);
    gwu[j] = total(lane_wu + j * m, m);
  }
  *gap = total(lane_ap, m);
  *gau = total(lane_au, m);
}

// x: planes x rows x cols (contiguous). axis 0 lifts along rows (H), 1 along cols (W). Outputs s, d: planes of
// (rows/2 x cols) or (rows x cols/2). sq: planes x 2 (sum (s - xo)^2, sum d^2).
template <class T>
void step_forward(const T* x, T* s, T* d, double* sq, int64_t planes, int64_t rows, int64_t cols, int axis,
                  int64_t channels, int k, const T* wp, const T* ap, const T* wu, const T* au, int threads) {
  const int64_t m = (axis == 0 ? rows : cols) / 2, p = k / 2;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> work(static_cast<size_t>(axis == 0 ? 3 * cols : 6 * m + 4 * p));
#pragma omp for schedule(static)
    for (int64_t pl = 0; pl < planes; ++pl) {
      const int64_t c = pl % channels;
      const T* xp = x + pl * rows * cols;
      T* sp = s + pl * rows * cols / 2;
      T* dp = d + pl * rows * cols / 2;
      if (axis == 0)
        plane_forward(xp, xp + cols, 2 * cols, dp, sp, m, cols, k, wp + c * k, ap[c], wu + c * k, au[c],
                      work.data(), sq + 2 * pl, sq + 2 * pl + 1);
      else
        rows_forward(xp, dp, sp, rows, m, k, wp + c * k, ap[c], wu + c * k, au[c], work.data(), sq + 2 * pl,
                     sq + 2 * pl + 1);
    }
  }
}

// gs, gd: gradients of s, d (their layout); gl: the two sums' gradients (u, p). gx: input gradient. gw: planes x
// (2K + 2) weight gradients per plane (wp taps, ap, wu taps, au), summed over the batch by the caller.
template <class T>
void step_backward(const T* x, const T* gs, const T* gd, const T* gl, T* gx, double* gw, int64_t planes,
                   int64_t rows, int64_t cols, int axis, int64_t channels, int k, const T* wp, const T* ap,
                   const T* wu, const T* au, int threads) {
  const int64_t m = (axis == 0 ? rows : cols) / 2, p = k / 2;
  const int64_t stride = 2 * k + 2;
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> work(
        static_cast<size_t>(axis == 0 ? 5 * m * cols + (2 * k + 2) * cols : (2 * k + 11) * m + 8 * p));
#pragma omp for schedule(static)
    for (int64_t pl = 0; pl < planes; ++pl) {
      const int64_t c = pl % channels;
      double* g = gw + pl * stride;
      const T* xp = x + pl * rows * cols;
      const T* gsp = gs + pl * rows * cols / 2;
      const T* gdp = gd + pl * rows * cols / 2;
      T* gxp = gx + pl * rows * cols;
      if (axis == 0)
        plane_backward(xp, xp + cols, 2 * cols, gsp, gdp, gl[0], gl[1], gxp, gxp + cols, m, cols, k, wp + c * k,
                       ap[c], wu + c * k, au[c], work.data(), g, g + k, g + k + 1, g + 2 * k + 1);
      else
        rows_backward(xp, gsp, gdp, gl[0], gl[1], gxp, rows, m, k, wp + c * k, ap[c], wu + c * k, au[c],
                      work.data(), g, g + k, g + k + 1, g + 2 * k + 1);
    }
  }
}

}  // namespace

extern "C" {

int rbl_lift_abi_version() { return 1; }

#define RBL_DEFINE(T, NAME)                                                                                      \
  void rbl_lift_forward_##NAME(const T* x, T* s, T* d, double* sq, int64_t planes, int64_t rows, int64_t cols,   \
                               int axis, int64_t channels, int k, const T* wp, const T* ap, const T* wu,          \
                               const T* au, int threads) {                                                       \
    step_forward(x, s, d, sq, planes, rows, cols, axis, channels, k, wp, ap, wu, au, threads);                   \
  }                                                                                                              \
  void rbl_lift_backward_##NAME(const T* x, const T* gs, const T* gd, const T* gl, T* gx, double* gw,            \
                                int64_t planes, int64_t rows, int64_t cols, int axis, int64_t channels, int k,   \
                                const T* wp, const T* ap, const T* wu, const T* au, int threads) {               \
    step_backward(x, gs, gd, gl, gx, gw, planes, rows, cols, axis, channels, k, wp, ap, wu, au, threads);        \
  }

RBL_DEFINE(float, f32)
RBL_DEFINE(double, f64)

}  // extern "C"
