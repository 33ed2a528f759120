//! `recadam demo`: forgetting, measured directly. A small BERT is pretrained on the synthetic
//! source task, then fine-tuned on the target task once with AdamW and once with RecAdam from
//! the same start; after each run the source task is scored again with the source head from
//! pretraining (frozen), on the fine-tuned encoder. What the encoder kept is what that head can
//! still read.

use std::time::Instant;

use recadam_core::{Annealing, PenaltyMode, RecAdamConfig};
use recadam_std::bert::{BertWeights, Head, Targets};
use recadam_std::{LinearWarmupDecay, Options};

use crate::finetune::OptimizerKind;
use crate::synthetic::{model_config, Dataset, SyntheticTask};
use recadam_std::evaluate::predicted_classes;
use recadam_std::metrics;
use recadam_std::trainer::{Batches, Classifier, TrainError, Trainer};

/// The demo's settings; the defaults are what `recadam demo` runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Seeds the data, the initialisation and the new heads.
    pub seed: u64,
    /// Threads per step.
    pub threads: usize,
    /// Sentences per batch.
    pub batch: usize,
    /// Pretraining steps on the source task (Adam).
    pub pretrain_steps: u64,
    /// Fine-tuning steps on the target task.
    pub finetune_steps: u64,
    /// Peak learning rate of fine-tuning (pretraining uses the same).
    pub lr: f64,
    /// RecAdam's sigmoid annealing rate k.
    pub k: f64,
    /// RecAdam's annealing midpoint t0 (steps).
    pub t0: f64,
    /// RecAdam's penalty coefficient γ.
    pub gamma: f64,
    /// Training examples per task (drawn once).
    pub train_size: usize,
    /// Held-out examples per task for scoring.
    pub eval_size: usize,
    /// Evaluate every this many fine-tuning steps (the curves).
    pub eval_every: u64,
}

impl Default for DemoOptions {
    fn default() -> DemoOptions {
        DemoOptions {
            seed: 0,
            // The model is too small for threads to pay: 23 s on one thread against about 35 on
            // two, measured here.
            threads: 1,
            batch: 32,
            pretrain_steps: 1500,
            finetune_steps: 400,
            lr: 1e-3,
            k: 0.05,
            t0: 300.0,
            gamma: 100.0,
            train_size: 20_000,
            eval_size: 1000,
            eval_every: 20,
        }
    }
}

/// One point of a fine-tuning run's curves.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CurvePoint {
    /// Fine-tuning step.
    pub step: u64,
    /// Mean training loss since the previous point.
    pub loss: f64,
    /// Target-task accuracy (held out).
    pub target_metric: f64,
    /// Source-task accuracy with the frozen source head (held out).
    pub source_metric: f64,
    /// Euclidean distance of the encoder to the pretrained one.
    pub distance: f64,
}

/// The result of one fine-tuning run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DemoRun {
    /// `adamw` or `recadam`.
    pub optimizer: String,
    /// The demo's seed.
    pub seed: u64,
    /// Target-task accuracy after fine-tuning.
    pub target_metric: f64,
    /// Source-task accuracy of the pretrained model.
    pub source_metric_before: f64,
    /// Source-task accuracy after fine-tuning (frozen source head).
    pub source_metric_after: f64,
    /// Euclidean distance of the fine-tuned encoder to the pretrained one.
    pub distance: f64,
    /// Seconds the fine-tuning took.
    pub seconds: f64,
    /// The curves, every `eval_every` steps.
    #[serde(skip)]
    pub curve: Vec<CurvePoint>,
}

/// Accuracy of `model` on `data`.
pub fn accuracy(model: &Classifier, data: &Dataset, threads: usize) -> Result<f64, TrainError> {
    let rows: Vec<usize> = (0..data.len()).collect();
    let mut predicted = Vec::with_capacity(data.len());
    for chunk in rows.chunks(256) {
        let logits = model.logits(&data.batch(chunk), threads)?;
        predicted.extend(predicted_classes(&logits, model.head.bias.len()));
    }
    Ok(metrics::accuracy(&predicted, &data.labels).unwrap_or(0.0))
}

fn options(config: RecAdamConfig, steps: u64, threads: usize) -> Options {
    Options {
        schedule: Box::new(LinearWarmupDecay {
            warmup: steps / 10,
            total: steps,
        }),
        max_grad_norm: Some(1.0),
        threads,
        ..Options::new(config)
    }
}

/// The pretrained model: a random encoder and source head trained on the source task.
pub fn pretrain(
    o: &DemoOptions,
    source: &Dataset,
    mut progress: impl FnMut(u64, f32),
) -> Result<Classifier, TrainError> {
    let encoder = BertWeights::random(model_config(), o.seed ^ 0x5052_4554);
    let head = Head::new(
        SyntheticTask::Source.classes(),
        encoder.config.hidden_size,
        o.seed ^ 0x5352_4345,
    );
    let start = encoder.data.clone().into();
    let model = Classifier { encoder, head };
    let config = RecAdamConfig::adamw(o.lr, 0.01);
    let mut trainer = Trainer::new(
        model,
        start,
        options(config, o.pretrain_steps, o.threads),
        false,
    )?;
    let mut batches = Batches::new(source.len(), o.batch, o.seed ^ 0x5054);
    for step in 1..=o.pretrain_steps {
        let rows = batches.next_rows();
        let targets = Targets::Labels(rows.iter().map(|&r| source.labels[r]).collect());
        let log = trainer.step(&source.batch(&rows), &targets, step)?;
        progress(step, log.loss);
    }
    Ok(trainer.model)
}

/// The fine-tuning configuration of `optimizer`.
pub fn finetune_config(o: &DemoOptions, optimizer: OptimizerKind) -> RecAdamConfig {
    let recadam = RecAdamConfig {
        lr: o.lr,
        weight_decay: 0.01,
        annealing: Annealing::Sigmoid { k: o.k, t0: o.t0 },
        pretrain_cof: o.gamma,
        ..RecAdamConfig::default()
    };
    match optimizer {
        OptimizerKind::Adamw => RecAdamConfig::adamw(o.lr, 0.01),
        OptimizerKind::Recadam => recadam,
        OptimizerKind::RecadamCoupled => RecAdamConfig {
            penalty_mode: PenaltyMode::Coupled,
            ..recadam
        },
    }
}

/// Everything a fine-tuning run needs from the pretraining.
pub struct Pretrained {
    /// The pretrained encoder and the source head.
    pub model: Classifier,
    /// Held-out source-task sentences.
    pub source_eval: Dataset,
    /// Target-task training sentences.
    pub target_train: Dataset,
    /// Held-out target-task sentences.
    pub target_eval: Dataset,
    /// Source-task accuracy of the pretrained model.
    pub source_metric: f64,
}

/// Fine-tunes the pretrained encoder on the target task with `optimizer`; `progress` sees every
/// curve point as it is measured.
pub fn finetune(
    o: &DemoOptions,
    pre: &Pretrained,
    optimizer: OptimizerKind,
    mut progress: impl FnMut(&CurvePoint),
) -> Result<DemoRun, TrainError> {
    let started = Instant::now();
    let theta_star = pre.model.encoder.data.clone().into();
    let model = Classifier {
        encoder: pre.model.encoder.clone(),
        head: Head::new(
            SyntheticTask::Target.classes(),
            pre.model.encoder.config.hidden_size,
            o.seed ^ 0x5441_5247,
        ),
    };
    let config = finetune_config(o, optimizer);
    let mut trainer = Trainer::new(
        model,
        theta_star,
        options(config, o.finetune_steps, o.threads),
        false,
    )?;
    // Same batch order for every optimizer: only the update rule differs.
    let mut batches = Batches::new(pre.target_train.len(), o.batch, o.seed ^ 0x4654);
    let source_score = |t: &Trainer| {
        let frozen = Classifier {
            encoder: t.model.encoder.clone(),
            head: pre.model.head.clone(),
        };
        accuracy(&frozen, &pre.source_eval, o.threads)
    };
    let mut curve = vec![CurvePoint {
        step: 0,
        loss: f64::NAN,
        target_metric: accuracy(&trainer.model, &pre.target_eval, o.threads)?,
        source_metric: pre.source_metric,
        distance: 0.0,
    }];
    let (mut loss_sum, mut loss_count) = (0.0f64, 0u64);
    for step in 1..=o.finetune_steps {
        let rows = batches.next_rows();
        let targets = Targets::Labels(rows.iter().map(|&r| pre.target_train.labels[r]).collect());
        let log = trainer.step(&pre.target_train.batch(&rows), &targets, step)?;
        loss_sum += f64::from(log.loss);
        loss_count += 1;
        if step % o.eval_every.max(1) == 0 || step == o.finetune_steps {
            let point = CurvePoint {
                step,
                loss: loss_sum / loss_count as f64,
                target_metric: accuracy(&trainer.model, &pre.target_eval, o.threads)?,
                source_metric: source_score(&trainer)?,
                distance: trainer.distance(),
            };
            (loss_sum, loss_count) = (0.0, 0);
            progress(&point);
            curve.push(point);
        }
    }
    let last = curve[curve.len() - 1];
    Ok(DemoRun {
        optimizer: optimizer.name().into(),
        seed: o.seed,
        target_metric: last.target_metric,
        source_metric_before: pre.source_metric,
        source_metric_after: last.source_metric,
        distance: last.distance,
        seconds: started.elapsed().as_secs_f64(),
        curve,
    })
}

/// Draws the data and pretrains.
pub fn prepare(o: &DemoOptions, progress: impl FnMut(u64, f32)) -> Result<Pretrained, TrainError> {
    let source_train = Dataset::generate(SyntheticTask::Source, o.train_size, o.seed ^ 1);
    let source_eval = Dataset::generate(SyntheticTask::Source, o.eval_size, o.seed ^ 2);
    let target_train = Dataset::generate(SyntheticTask::Target, o.train_size, o.seed ^ 3);
    let target_eval = Dataset::generate(SyntheticTask::Target, o.eval_size, o.seed ^ 4);
    let model = pretrain(o, &source_train, progress)?;
    let source_metric = accuracy(&model, &source_eval, o.threads)?;
    Ok(Pretrained {
        model,
        source_eval,
        target_train,
        target_eval,
        source_metric,
    })
}

/// The demo's table: one row per fine-tuning run.
pub fn table(runs: &[DemoRun]) -> String {
    let mut out = String::from(
        "  optimizer   target acc   source acc before → after   distance to θ*   time\n",
    );
    for r in runs {
        out += &format!(
            "  {:<10}  {:>10.3}   {:>12.3} → {:<10.3}   {:>14.3}   {:>4.1} s\n",
            r.optimizer,
            r.target_metric,
            r.source_metric_before,
            r.source_metric_after,
            r.distance,
            r.seconds
        );
    }
    out
}

/// The demo's curves: target loss, target accuracy, source accuracy (forgetting) and distance.
pub fn panels(runs: &[DemoRun]) -> Vec<crate::plot::Panel> {
    use crate::plot::{Panel, Series};
    let series = |f: &dyn Fn(&CurvePoint) -> f64| {
        runs.iter()
            .map(|r| Series {
                label: r.optimizer.clone(),
                points: r.curve.iter().map(|p| (p.step as f64, f(p))).collect(),
            })
            .collect::<Vec<_>>()
    };
    vec![
        Panel {
            title: "target task: training loss".into(),
            series: series(&|p| p.loss),
        },
        Panel {
            title: "target task: accuracy".into(),
            series: series(&|p| p.target_metric),
        },
        Panel {
            title: "source task: accuracy (forgetting)".into(),
            series: series(&|p| p.source_metric),
        },
        Panel {
            title: "distance to pretrained θ*".into(),
            series: series(&|p| p.distance),
        },
    ]
}
