'use strict';
// The chi-square two-sample test of homogeneity: do two samples of categorical outcomes come from the same
// distribution? For tests of sampling (speculative against plain decoding).

// ln Gamma(z) for z > 0 (Lanczos, g = 7, 9 terms; relative error far below what a p-value needs).
const LANCZOS = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];

function logGamma(z) {
  if (z < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * z)) - logGamma(1 - z);
  const x = z - 1;
  let sum = LANCZOS[0];
  for (let i = 1; i < LANCZOS.length; i++) sum += LANCZOS[i] / (x + i);
  const t = x + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(sum);
}

// The regularized upper incomplete gamma function Q(a, x) = Gamma(a, x) / Gamma(a): the series for P below
// x = a + 1, where it converges fast, and a continued fraction (modified Lentz) above.
function upperGammaRegularized(a, x) {
  if (x <= 0) return 1;
  const prefix = Math.exp(a * Math.log(x) - x - logGamma(a));
  if (x < a + 1) {
    let term = 1 / a;
    let sum = term;
    for (let n = 1; n < 1000 && Math.abs(term) > Math.abs(sum) * 1e-15; n++) {
      term *= x / (a + n);
      sum += term;
    }
    return Math.max(0, 1 - prefix * sum);
  }
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const delta = d * c;
    h *= delta;
    if (Math.abs(delta - 1) < 1e-15) break;
  }
  return prefix * h;
}

/** P(X >= statistic) for X chi-square distributed with `df` degrees of freedom. */
function chiSquareSurvival(statistic, df) {
  return upperGammaRegularized(df / 2, statistic / 2);
}

/**
 * Tests whether samples `a` and `b` (arrays of outcomes, compared with ===, or strings) come from one
 * distribution. Outcomes seen fewer than `minCount` times in both samples together are merged into one
 * category (the approximation needs expected counts of about 5 per cell); if that merged category is itself
 * that rare it joins the rarest kept outcome. Returns { statistic, df (categories - 1), p, categories: [{
 * outcome, a, b }] }; df 0 (one category) gives p = 1.
 */
function chiSquareTwoSample(a, b, { minCount = 10 } = {}) {
  const counts = new Map();
  const count = (sample, side) => {
    for (const outcome of sample) {
      const key = String(outcome);
      if (!counts.has(key)) counts.set(key, { outcome: key, a: 0, b: 0 });
      counts.get(key)[side]++;
    }
  };
  count(a, 'a');
  count(b, 'b');
  const kept = [];
  const rare = { outcome: '(rare outcomes)', a: 0, b: 0 };
  for (const c of counts.values()) {
    if (c.a + c.b >= minCount) kept.push(c);
    else [rare.a, rare.b] = [rare.a + c.a, rare.b + c.b];
  }
  kept.sort((x, y) => y.a + y.b - (x.a + x.b));
  if (rare.a + rare.b >= minCount || kept.length === 0) kept.push(rare);
  else if (rare.a + rare.b > 0) {
    const rarest = kept[kept.length - 1];
    kept[kept.length - 1] = { outcome: `${rarest.outcome} + (rare outcomes)`, a: rarest.a + rare.a, b: rarest.b + rare.b };
  }
  const categories = kept.filter((c) => c.a + c.b > 0);
  const na = a.length;
  const nb = b.length;
  let statistic = 0;
  for (const c of categories) {
    const diff = c.a * Math.sqrt(nb / na) - c.b * Math.sqrt(na / nb);
    statistic += (diff * diff) / (c.a + c.b);
  }
  const df = categories.length - 1;
  return { statistic, df, p: df > 0 ? chiSquareSurvival(statistic, df) : 1, categories };
}

module.exports = { chiSquareTwoSample, chiSquareSurvival };
