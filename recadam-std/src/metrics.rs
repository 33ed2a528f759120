//! The GLUE metrics: accuracy, F1 of the positive class (MRPC), Matthews correlation (CoLA), and
//! Pearson and Spearman correlation (STS-B), computed as scikit-learn and SciPy compute them.

/// Predictions and gold labels that cannot be scored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// Different numbers of predictions and labels.
    #[error("{predictions} predictions for {labels} labels")]
    Length {
        /// Predictions given.
        predictions: usize,
        /// Labels given.
        labels: usize,
    },
    /// Nothing to score.
    #[error("no examples to score")]
    Empty,
}

fn check<A, B>(pred: &[A], gold: &[B]) -> Result<(), MetricError> {
    if pred.len() != gold.len() {
        Err(MetricError::Length {
            predictions: pred.len(),
            labels: gold.len(),
        })
    } else if pred.is_empty() {
        Err(MetricError::Empty)
    } else {
        Ok(())
    }
}

/// Binary confusion counts with class 1 as positive: (tp, fp, tn, fn).
fn confusion(pred: &[usize], gold: &[usize]) -> (f64, f64, f64, f64) {
    let mut c = [0.0f64; 4];
    for (&p, &g) in pred.iter().zip(gold) {
        let i = match (p == 1, g == 1) {
            (true, true) => 0,
            (true, false) => 1,
            (false, false) => 2,
            (false, true) => 3,
        };
        c[i] += 1.0;
    }
    (c[0], c[1], c[2], c[3])
}

/// The fraction of predictions equal to the label.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> Result<f64, MetricError> {
    check(pred, gold)?;
    let right = pred.iter().zip(gold).filter(|(p, g)| p == g).count();
    Ok(right as f64 / pred.len() as f64)
}

/// F1 of class 1 (binary): 2·tp / (2·tp + fp + fn); 0 when there is no positive at all, as
/// scikit-learn's `f1_score` reports it.
pub fn f1(pred: &[usize], gold: &[usize]) -> Result<f64, MetricError> {
    check(pred, gold)?;
    let (tp, fp, _, fn_) = confusion(pred, gold);
    let denom = 2.0 * tp + fp + fn_;
    Ok(if denom == 0.0 { 0.0 } else { 2.0 * tp / denom })
}

/// Matthews correlation of binary labels: (tp·tn − fp·fn) / √((tp+fp)(tp+fn)(tn+fp)(tn+fn)); 0 when
/// a factor of the denominator is 0 (one class predicted or present only), as scikit-learn.
pub fn matthews(pred: &[usize], gold: &[usize]) -> Result<f64, MetricError> {
    check(pred, gold)?;
    let (tp, fp, tn, fn_) = confusion(pred, gold);
    let denom = ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
    Ok(if denom == 0.0 {
        0.0
    } else {
        (tp * tn - fp * fn_) / denom
    })
}

/// Pearson's correlation; NaN when either side is constant (undefined, as SciPy).
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64, MetricError> {
    check(x, y)?;
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    Ok(sxy / (sxx * syy).sqrt())
}

/// Ranks from 1, ties given the mean of the ranks they span (SciPy's `rankdata` "average").
/// NaN values rank after every number.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        let mean = (start + end + 1) as f64 / 2.0;
        order[start..end].iter().for_each(|&i| ranks[i] = mean);
        start = end;
    }
    ranks
}

/// Spearman's rank correlation: Pearson's correlation of the average ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64, MetricError> {
    check(x, y)?;
    pearson(&ranks(x), &ranks(y))
}
