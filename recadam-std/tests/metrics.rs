//! The GLUE metrics against values worked out by hand (and checked with scikit-learn / SciPy's
//! definitions).

use recadam_std::metrics::{accuracy, f1, matthews, pearson, ranks, spearman, MetricError};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn classification_metrics_by_hand() {
    // tp = 3 (rows 0, 1, 2), fp = 1 (row 3), tn = 2 (rows 4, 5), fn = 2 (rows 6, 7).
    let pred = [1, 1, 1, 1, 0, 0, 0, 0];
    let gold = [1, 1, 1, 0, 0, 0, 1, 1];
    assert!(close(accuracy(&pred, &gold).unwrap(), 5.0 / 8.0));
    // F1 = 2·3 / (2·3 + 1 + 2) = 6/9.
    assert!(close(f1(&pred, &gold).unwrap(), 6.0 / 9.0));
    // MCC = (3·2 − 1·2) / √(4·5·3·4) = 4 / √240.
    assert!(close(matthews(&pred, &gold).unwrap(), 4.0 / 240f64.sqrt()));
    // Perfect and inverted predictions.
    assert!(close(matthews(&gold, &gold).unwrap(), 1.0));
    let inverted: Vec<usize> = gold.iter().map(|g| 1 - g).collect();
    assert!(close(matthews(&inverted, &gold).unwrap(), -1.0));
    assert!(close(accuracy(&inverted, &gold).unwrap(), 0.0));
    // One class predicted: MCC is 0 (scikit-learn), F1 of no positives is 0.
    assert_eq!(matthews(&[0, 0, 0], &[0, 1, 1]).unwrap(), 0.0);
    assert_eq!(f1(&[0, 0], &[0, 0]).unwrap(), 0.0);
}

#[test]
fn correlations_by_hand() {
    // y = 2x + 1: Pearson 1; reversed: −1.
    let x = [1.0, 2.0, 3.0, 4.0];
    let y = [3.0, 5.0, 7.0, 9.0];
    assert!(close(pearson(&x, &y).unwrap(), 1.0));
    let rev: Vec<f64> = y.iter().rev().copied().collect();
    assert!(close(pearson(&x, &rev).unwrap(), -1.0));
    // x = (1, 2, 3), y = (1, 3, 2): deviations (−1, 0, 1) and (−1, 1, 0): r = 1 / 2.
    assert!(close(
        pearson(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]).unwrap(),
        0.5
    ));
    // Spearman is Pearson of ranks: a monotone but non-linear relation gives 1.
    let cubes: Vec<f64> = x.iter().map(|v| v * v * v).collect();
    assert!(close(spearman(&x, &cubes).unwrap(), 1.0));
    assert!(pearson(&x, &cubes).unwrap() < 1.0 - 1e-3);
    // Ties get average ranks: (10, 20, 20, 30) → (1, 2.5, 2.5, 4).
    assert_eq!(ranks(&[10.0, 20.0, 20.0, 30.0]), vec![1.0, 2.5, 2.5, 4.0]);
    assert_eq!(ranks(&[3.0, 1.0, 2.0]), vec![3.0, 1.0, 2.0]);
    // x = (1, 2, 3, 4), y = (1, 3, 2, 2) → y ranks (1, 4, 2.5, 2.5):
    // deviations (−1.5, −0.5, 0.5, 1.5) and (−1.5, 1.5, 0, 0): sxy = 1.5, sxx = 5, syy = 4.5.
    let rho = spearman(&x, &[1.0, 3.0, 2.0, 2.0]).unwrap();
    assert!(close(rho, 1.5 / (5.0f64 * 4.5).sqrt()), "{rho}");
    // A constant side has no correlation.
    assert!(pearson(&x, &[2.0; 4]).unwrap().is_nan());
}

#[test]
fn unscorable_inputs_are_errors() {
    assert_eq!(
        accuracy(&[1, 0], &[1]),
        Err(MetricError::Length {
            predictions: 2,
            labels: 1
        })
    );
    assert_eq!(f1(&[], &[]), Err(MetricError::Empty));
    assert_eq!(spearman(&[], &[]), Err(MetricError::Empty));
    assert!(pearson(&[1.0], &[1.0, 2.0]).is_err());
}
