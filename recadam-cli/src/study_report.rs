//! `recadam study report`: a study's rows as Markdown tables (median and range over seeds per task
//! and arm, the average over tasks, RecAdam's gain over AdamW on the same seeds, the zero-shot
//! STS-B skill kept, the distance to θ*) and three figures: the scores with every seed, the skill
//! kept, and the distance to θ* and λ over the steps (the paper's Figure 2).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use recadam_std::glue::Task;

use crate::plot::{median, write_strips_svg, write_svg, Panel, Series, Strip};
use crate::study::{Arm, Row, StudyError, TaskKey};

/// Median, least and greatest of the finite values; `None` when there are none.
fn spread(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64, f64, usize)> {
    let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((median(v.iter().copied())?, lo, hi, v.len()))
}

/// The mean of the finite values; `None` when there are none.
fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn cell(values: impl IntoIterator<Item = f64>) -> String {
    match spread(values) {
        None => "—".into(),
        Some((m, lo, hi, 1)) if lo == hi => format!("{m:.4} (1 seed)"),
        Some((m, lo, hi, n)) => format!("{m:.4} [{lo:.4}, {hi:.4}] ({n} seeds)"),
    }
}

fn signed_cell(values: impl IntoIterator<Item = f64>) -> String {
    match spread(values) {
        None => "—".into(),
        Some((m, _, _, 1)) => format!("{m:+.4} (1 seed)"),
        Some((m, lo, hi, n)) => format!("{m:+.4} [{lo:+.4}, {hi:+.4}] ({n} seeds)"),
    }
}

/// The rows of a study checked to be one study: one model, and one protocol per task. A row
/// that differs from the first of its kind is an error naming its line.
pub fn check_one_study(path: &Path, rows: &[(usize, Row)]) -> Result<(), StudyError> {
    let mut first_protocol: BTreeMap<&str, (usize, &Row)> = BTreeMap::new();
    let Some((first_line, first)) = rows.first() else {
        return Err(StudyError::Usage(format!(
            "{} holds no rows to report",
            path.display()
        )));
    };
    for (line, row) in rows {
        let foreign = |reason: String| StudyError::Line {
            path: path.into(),
            line: *line,
            reason,
        };
        if row.model != first.model {
            return Err(foreign(format!(
                "a row of model {}, but line {first_line} is of {}: one report is of one study",
                row.model, first.model
            )));
        }
        let (l, r) = *first_protocol.entry(&row.task).or_insert((*line, row));
        if r.protocol != row.protocol {
            return Err(foreign(format!(
                "a {} row of another protocol than line {l}'s: one report is of one study",
                row.task
            )));
        }
    }
    Ok(())
}

type Cells<'a> = BTreeMap<(TaskKey, Arm), Vec<&'a Row>>;

fn cells(rows: &[(usize, Row)]) -> Cells<'_> {
    let mut cells: Cells = BTreeMap::new();
    for (_, row) in rows {
        if let Ok(entry) = row.entry() {
            cells.entry((entry.task, entry.arm)).or_default().push(row);
        }
    }
    cells
}

/// The rows by (task, arm), and the tasks and arms that have rows, in table order.
fn grid(rows: &[(usize, Row)]) -> (Cells<'_>, Vec<TaskKey>, Vec<Arm>) {
    let cells = cells(rows);
    let tasks = cells.keys().map(|k| k.0).collect::<BTreeSet<_>>();
    let arms = cells.keys().map(|k| k.1).collect::<BTreeSet<_>>();
    (
        cells,
        tasks.into_iter().collect(),
        arms.into_iter().collect(),
    )
}

/// The report as Markdown.
pub fn markdown(rows: &[(usize, Row)]) -> String {
    let Some((_, first)) = rows.first() else {
        return "# RecAdam study\n\nNo runs have finished yet.\n".into();
    };
    let (cells, tasks, arms) = grid(rows);
    let mut md = String::new();
    let cpus: BTreeSet<&str> = rows.iter().map(|(_, r)| r.cpu.as_str()).collect();
    let commits: BTreeSet<&str> = rows.iter().map(|(_, r)| r.commit.as_str()).collect();
    let threads: BTreeSet<usize> = rows.iter().map(|(_, r)| r.threads).collect();
    let hours: f64 = rows.iter().map(|(_, r)| r.seconds).sum::<f64>() / 3600.0;
    let p = &first.protocol;
    let _ = writeln!(md, "# RecAdam study: {} on GLUE dev\n", first.model);
    let _ = writeln!(
        md,
        "{} run{}; {:.1} hours of wall time in all; CPU: {}; threads: {}; commits: {}.\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        hours,
        cpus.into_iter().collect::<Vec<_>>().join("; "),
        threads
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        commits
            .iter()
            .map(|c| c.get(..12).unwrap_or(c))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let steps: Vec<String> = tasks
        .iter()
        .filter_map(|t| {
            let row = cells.iter().find(|(k, _)| k.0 == *t)?.1.first()?;
            Some(format!("{} {}", t.0, row.protocol.steps))
        })
        .collect();
    let _ = writeln!(
        md,
        "Protocol: lr {}, batch {}, max length {} (padded to the longest in the batch), steps {}, \
         linear warm-up over {}% of the steps then decay, weight decay {}, k {}, t0 {}, γ {}, clipping {}, dropout {}; \
         dev evaluation every {} steps and at the end. Arms: `adamw` (AdamW from the pretrained \
         weights), `recadam` (RecAdam from the pretrained weights), `recadam-random` (RecAdam from \
         a random initialisation, pulled towards the pretrained weights).\n",
        p.lr,
        p.batch_size,
        p.max_seq_length,
        steps.join(", "),
        p.warmup_ratio * 100.0,
        p.weight_decay,
        p.k,
        p.t0,
        p.gamma,
        p.max_grad_norm,
        p.dropout,
        p.eval_every
    );

    // Scores: every dev metric, the task's main metric first.
    let _ = writeln!(md, "## Dev scores (median [least, greatest] over seeds)\n");
    let header = |md: &mut String, first: &str| {
        let _ = write!(md, "| {first} |");
        for arm in &arms {
            let _ = write!(md, " {} |", arm.name());
        }
        let _ = write!(md, "\n|---|");
        for _ in &arms {
            let _ = write!(md, "---|");
        }
        md.push('\n');
    };
    header(&mut md, "task (metric)");
    for task in &tasks {
        let main = task.0.main_metric();
        let mut metrics: Vec<String> = cells
            .iter()
            .filter(|(k, _)| k.0 == *task)
            .flat_map(|(_, rows)| rows.iter().flat_map(|r| r.dev.keys().cloned()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        metrics.sort_by_key(|m| m != main);
        for metric in metrics {
            let _ = write!(
                md,
                "| {} ({metric}{}) |",
                task.0,
                if metric == main { ", main" } else { "" }
            );
            for arm in &arms {
                let values = cells
                    .get(&(*task, *arm))
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.dev.get(&metric).copied());
                let _ = write!(md, " {} |", cell(values));
            }
            md.push('\n');
        }
    }
    // The average over tasks of each arm's median main score, over the tasks every arm has.
    let complete: Vec<TaskKey> = tasks
        .iter()
        .copied()
        .filter(|t| arms.iter().all(|a| cells.contains_key(&(*t, *a))))
        .collect();
    if !complete.is_empty() {
        let _ = write!(
            md,
            "| average of the main metrics ({}) |",
            complete
                .iter()
                .map(|t| t.0.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for arm in &arms {
            let medians = complete.iter().filter_map(|t| {
                spread(cells.get(&(*t, *arm))?.iter().map(|r| r.score)).map(|s| s.0)
            });
            let _ = write!(
                md,
                " {} |",
                mean(medians).map_or("—".into(), |m| format!("{m:.4}"))
            );
        }
        md.push('\n');
    }

    // Gains over AdamW on the same seeds.
    let others: Vec<Arm> = arms.iter().copied().filter(|a| *a != Arm::Adamw).collect();
    if arms.contains(&Arm::Adamw) && !others.is_empty() {
        let _ = writeln!(
            md,
            "\n## Gain over AdamW in the main metric (the difference on each seed both ran; \
             median [least, greatest])\n"
        );
        let _ = write!(md, "| task |");
        for arm in &others {
            let _ = write!(md, " {} − adamw |", arm.name());
        }
        let _ = write!(md, "\n|---|");
        for _ in &others {
            let _ = write!(md, "---|");
        }
        md.push('\n');
        // Each arm's differences from AdamW on the seeds both ran, by task.
        let gains = |task: TaskKey, arm: Arm| -> Vec<f64> {
            let base: BTreeMap<u64, f64> = cells
                .get(&(task, Arm::Adamw))
                .into_iter()
                .flatten()
                .map(|r| (r.seed, r.score))
                .collect();
            cells
                .get(&(task, arm))
                .into_iter()
                .flatten()
                .filter_map(|r| Some(r.score - base.get(&r.seed)?))
                .collect()
        };
        for task in &tasks {
            let _ = write!(md, "| {} ({}) |", task.0, task.0.main_metric());
            for arm in &others {
                let _ = write!(md, " {} |", signed_cell(gains(*task, *arm)));
            }
            md.push('\n');
        }
        let _ = write!(md, "| average over the tasks of the median gains |");
        for arm in &others {
            let medians = tasks
                .iter()
                .filter_map(|t| spread(gains(*t, *arm)).map(|s| s.0));
            let _ = write!(
                md,
                " {} |",
                mean(medians).map_or("—".into(), |m| format!("{m:+.4}"))
            );
        }
        md.push('\n');
    }

    // Forgetting.
    let source: Vec<TaskKey> = tasks
        .iter()
        .copied()
        .filter(|t| t.0 != Task::Stsb)
        .filter(|t| {
            cells
                .iter()
                .any(|(k, rows)| k.0 == *t && rows.iter().any(|r| r.stsb_zero_shot_after.is_some()))
        })
        .collect();
    if !source.is_empty() {
        let _ = writeln!(
            md,
            "\n## Forgetting: zero-shot STS-B dev Spearman of the mean-pooled encoder after \
             fine-tuning (higher: more of the pretrained skill kept)\n"
        );
        header(&mut md, "fine-tuned on (pretrained before)");
        for task in &source {
            let before = cells
                .iter()
                .filter(|(k, _)| k.0 == *task)
                .flat_map(|(_, rows)| rows.iter().filter_map(|r| r.stsb_zero_shot_before))
                .next();
            let _ = write!(
                md,
                "| {} ({}) |",
                task.0,
                before.map_or("—".into(), |b| format!("{b:.4}"))
            );
            for arm in &arms {
                let values = cells
                    .get(&(*task, *arm))
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.stsb_zero_shot_after);
                let _ = write!(md, " {} |", cell(values));
            }
            md.push('\n');
        }
    }

    // Distance to θ*, and the cost.
    let _ = writeln!(md, "\n## Distance of the encoder to θ* at the end\n");
    header(&mut md, "task");
    for task in &tasks {
        let _ = write!(md, "| {} |", task.0);
        for arm in &arms {
            let values = cells
                .get(&(*task, *arm))
                .into_iter()
                .flatten()
                .map(|r| r.distance);
            let _ = write!(md, " {} |", cell(values));
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "\n## Time per run (median wall seconds; median tokens/s)\n"
    );
    header(&mut md, "task");
    for task in &tasks {
        let _ = write!(md, "| {} |", task.0);
        for arm in &arms {
            let rows = cells.get(&(*task, *arm)).map(Vec::as_slice).unwrap_or(&[]);
            match (
                spread(rows.iter().map(|r| r.seconds)),
                spread(rows.iter().map(|r| r.tokens_per_s)),
            ) {
                (Some(s), Some(t)) => {
                    let _ = write!(md, " {:.0} s; {:.0} tok/s |", s.0, t.0);
                }
                _ => md.push_str(" — |"),
            }
        }
        md.push('\n');
    }
    md
}

/// The median of each arm's curve over its seeds, at every step all of them logged.
fn median_curve(
    rows: &[&Row],
    value: impl Fn(&crate::study::CurvePoint) -> Option<f64>,
) -> Vec<(f64, f64)> {
    let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for row in rows {
        for p in &row.curve {
            if let Some(v) = value(p) {
                at.entry(p.step).or_default().push(v);
            }
        }
    }
    at.into_iter()
        .filter(|(_, v)| v.len() == rows.len())
        .filter_map(|(step, v)| Some((step as f64, spread(v)?.0)))
        .collect()
}

/// Writes the figures into `dir`: `scores.svg`, `forgetting.svg` (when the rows have the probe),
/// `curves.svg`; returns their paths.
pub fn figures(rows: &[(usize, Row)], dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cells, tasks, arms) = grid(rows);
    let values = |task: TaskKey, arm: Arm, f: &dyn Fn(&Row) -> Option<f64>| -> Vec<f64> {
        cells
            .get(&(task, arm))
            .into_iter()
            .flatten()
            .filter_map(|r| f(r))
            .collect()
    };
    let mut written = Vec::new();
    let scores: Vec<Strip> = tasks
        .iter()
        .map(|&t| Strip {
            title: format!("{} dev {}", t.0, t.0.main_metric()),
            categories: arms.iter().map(|a| a.name().to_owned()).collect(),
            values: arms
                .iter()
                .map(|&a| values(t, a, &|r| Some(r.score)))
                .collect(),
        })
        .collect();
    let path = dir.join("scores.svg");
    write_strips_svg(&path, &scores)?;
    written.push(path);

    let kept: Vec<Strip> = tasks
        .iter()
        .filter(|t| t.0 != Task::Stsb)
        .map(|&t| {
            let before: Vec<f64> = arms
                .iter()
                .flat_map(|&a| values(t, a, &|r| r.stsb_zero_shot_before))
                .take(1)
                .collect();
            Strip {
                title: format!("STS-B zero-shot after {}", t.0),
                categories: std::iter::once("pretrained".to_owned())
                    .chain(arms.iter().map(|a| a.name().to_owned()))
                    .collect(),
                values: std::iter::once(before)
                    .chain(
                        arms.iter()
                            .map(|&a| values(t, a, &|r| r.stsb_zero_shot_after)),
                    )
                    .collect(),
            }
        })
        .filter(|s| s.values.iter().skip(1).any(|v| !v.is_empty()))
        .collect();
    if !kept.is_empty() {
        let path = dir.join("forgetting.svg");
        write_strips_svg(&path, &kept)?;
        written.push(path);
    }

    let mut panels: Vec<Panel> = tasks
        .iter()
        .map(|&t| Panel {
            title: format!("{}: distance to θ* (median over seeds)", t.0),
            series: arms
                .iter()
                .filter_map(|&a| {
                    let rows = cells.get(&(t, a))?;
                    Some(Series {
                        label: a.name().into(),
                        points: median_curve(rows, |p| Some(p.distance)),
                    })
                })
                .collect(),
        })
        .collect();
    let lambda: Option<Series> = tasks.iter().find_map(|&t| {
        let rows = cells.get(&(t, Arm::Recadam))?;
        Some(Series {
            label: format!("λ(t), k {}, t0 {}", rows[0].protocol.k, rows[0].protocol.t0),
            points: median_curve(&rows[..1], |p| p.lambda),
        })
    });
    if let Some(lambda) = lambda {
        panels.push(Panel {
            title: "annealing λ(t) of RecAdam".into(),
            series: vec![lambda],
        });
    }
    let path = dir.join("curves.svg");
    write_svg(&path, &panels)?;
    written.push(path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::Protocol;

    fn row(task: &str, arm: Arm, seed: u64, score: f64) -> Row {
        let metric = task.parse::<Task>().unwrap().main_metric().to_string();
        Row {
            task: task.into(),
            arm,
            seed,
            model: "m".into(),
            protocol: Protocol {
                lr: 5e-5,
                batch_size: 32,
                max_seq_length: 128,
                steps: 600,
                warmup_ratio: 0.1,
                weight_decay: 0.01,
                k: 0.1,
                t0: 150.0,
                gamma: 5000.0,
                max_grad_norm: 1.0,
                eval_every: 100,
                dropout: 0.1,
            },
            dev: [(metric.clone(), score)].into_iter().collect(),
            main_metric: metric,
            score,
            distance: 1.0,
            lambda: 1.0,
            stsb_zero_shot_before: Some(0.87),
            stsb_zero_shot_after: Some(0.8),
            curve: Vec::new(),
            seconds: 10.0,
            resumed: false,
            tokens_per_s: 1000.0,
            threads: 2,
            cpu: "cpu".into(),
            commit: "c".into(),
            command: "recadam study".into(),
            finished_unix: 0,
        }
    }

    /// The line of `md` that starts with `start`.
    fn line<'a>(md: &'a str, start: &str) -> &'a str {
        md.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line `{start}` in:\n{md}"))
    }

    #[test]
    fn gains_pair_seeds_and_averages_are_over_tasks() {
        // AdamW's and RecAdam's medians are both 0.60, but seed against seed RecAdam gains
        // +0.10, −0.05, +0.05: a median gain of +0.05, not the 0 of the medians' difference.
        let rows: Vec<(usize, Row)> = [
            row("RTE", Arm::Adamw, 0, 0.50),
            row("RTE", Arm::Adamw, 1, 0.70),
            row("RTE", Arm::Adamw, 2, 0.60),
            row("RTE", Arm::Recadam, 0, 0.60),
            row("RTE", Arm::Recadam, 1, 0.65),
            row("RTE", Arm::Recadam, 2, 0.65),
            row("CoLA", Arm::Adamw, 0, 0.30),
            row("CoLA", Arm::Recadam, 0, 0.40),
            // A seed AdamW did not run: no pair, no gain.
            row("CoLA", Arm::Recadam, 1, 0.90),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, r)| (i + 1, r))
        .collect();
        let md = markdown(&rows);
        assert_eq!(
            line(&md, "| RTE (accuracy, main)"),
            "| RTE (accuracy, main) | 0.6000 [0.5000, 0.7000] (3 seeds) | 0.6500 [0.6000, 0.6500] (3 seeds) |"
        );
        assert_eq!(
            line(&md, "| RTE (accuracy) |"),
            "| RTE (accuracy) | +0.0500 [-0.0500, +0.1000] (3 seeds) |"
        );
        assert_eq!(
            line(&md, "| CoLA (mcc) |"),
            "| CoLA (mcc) | +0.1000 (1 seed) |"
        );
        assert_eq!(
            line(&md, "| average over the tasks"),
            "| average over the tasks of the median gains | +0.0750 |"
        );
        // The medians' average: AdamW (0.60 + 0.30) / 2, RecAdam (0.65 + 0.65) / 2.
        assert_eq!(
            line(&md, "| average of the main metrics"),
            "| average of the main metrics (RTE, CoLA) | 0.4500 | 0.6500 |"
        );
    }

    #[test]
    fn no_rows_and_nan_scores_report_without_panicking() {
        assert!(markdown(&[]).contains("No runs"));
        let rows = vec![(1, row("STS-B", Arm::Adamw, 0, f64::NAN))];
        let md = markdown(&rows);
        assert!(line(&md, "| STS-B (spearman, main)").contains("—"), "{md}");
    }
}
