//! Parameter groups, as the official `RecAdam.py` param groups: which parameters a group takes
//! (chosen by name), and the hyperparameters it overrides (learning rate, weight decay,
//! `anneal_w`, `pretrain_cof`, betas, eps, bias correction, annealing shape).

use recadam_core::{Annealing, RecAdamConfig};
use regex::Regex;

/// Which parameter names a group takes.
#[derive(Clone, Debug)]
pub enum Selector {
    /// Every parameter.
    All,
    /// Names starting with this prefix (`"bert."`).
    Prefix(String),
    /// Names containing any of these (`["bias", "LayerNorm.weight"]`, the script's `no_decay`).
    ContainsAny(Vec<String>),
    /// Names matching this regular expression.
    Pattern(Regex),
    /// Names the inner selector does not take.
    Not(Box<Selector>),
    /// Names every inner selector takes.
    And(Vec<Selector>),
}

impl Selector {
    /// Whether `name` is selected.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Selector::All => true,
            Selector::Prefix(prefix) => name.starts_with(prefix.as_str()),
            Selector::ContainsAny(parts) => parts.iter().any(|p| name.contains(p.as_str())),
            Selector::Pattern(re) => re.is_match(name),
            Selector::Not(inner) => !inner.matches(name),
            Selector::And(all) => all.iter().all(|s| s.matches(name)),
        }
    }

    /// A regular-expression selector; the error says what is wrong with the pattern.
    pub fn pattern(pattern: &str) -> Result<Selector, regex::Error> {
        Regex::new(pattern).map(Selector::Pattern)
    }
}

/// The hyperparameters a group sets for itself; `None` takes the optimizer's
/// ([`Options::config`](crate::Options::config)). The learning rate is the group's base rate:
/// the schedule multiplies it, and [`Optimizer::set_lr`](crate::Optimizer::set_lr) replaces it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Base learning rate.
    pub lr: Option<f64>,
    /// Decoupled weight decay.
    pub weight_decay: Option<f64>,
    /// The scale w of λ(t); 0 turns the penalty off (plain AdamW, as for a new task head).
    pub anneal_w: Option<f64>,
    /// γ, the penalty's coefficient.
    pub pretrain_cof: Option<f64>,
    /// β1.
    pub beta1: Option<f64>,
    /// β2.
    pub beta2: Option<f64>,
    /// ε.
    pub eps: Option<f64>,
    /// Adam's bias correction.
    pub correct_bias: Option<bool>,
    /// The shape of λ(t).
    pub annealing: Option<Annealing>,
}

impl Overrides {
    /// `base` with these overrides applied.
    pub fn apply(&self, base: &RecAdamConfig) -> RecAdamConfig {
        RecAdamConfig {
            lr: self.lr.unwrap_or(base.lr),
            weight_decay: self.weight_decay.unwrap_or(base.weight_decay),
            anneal_w: self.anneal_w.unwrap_or(base.anneal_w),
            pretrain_cof: self.pretrain_cof.unwrap_or(base.pretrain_cof),
            beta1: self.beta1.unwrap_or(base.beta1),
            beta2: self.beta2.unwrap_or(base.beta2),
            eps: self.eps.unwrap_or(base.eps),
            correct_bias: self.correct_bias.unwrap_or(base.correct_bias),
            annealing: self.annealing.unwrap_or(base.annealing),
            penalty_mode: base.penalty_mode,
        }
    }
}

/// A parameter group: the first group (in the order added) whose selector takes a parameter's
/// name owns it; a parameter no group takes goes to the default group (named
/// [`Group::DEFAULT`], with the optimizer's own hyperparameters).
///
/// ```
/// use recadam_std::{Group, Selector};
///
/// // The official GLUE script's head: its own learning rate, no penalty, no weight decay.
/// let head = Group::new("head", Selector::Prefix("classifier.".into()))
///     .lr(1e-3)
///     .anneal_w(0.0)
///     .weight_decay(0.0);
/// assert_eq!(head.overrides.anneal_w, Some(0.0));
/// ```
#[derive(Clone, Debug)]
pub struct Group {
    /// Shown in metrics and errors, and stored in checkpoints.
    pub name: String,
    /// Which parameters belong here.
    pub selector: Selector,
    /// The hyperparameters this group sets for itself.
    pub overrides: Overrides,
}

impl Group {
    /// The name of the group that takes the parameters no added group selects.
    pub const DEFAULT: &'static str = "default";

    /// A group with the optimizer's hyperparameters.
    pub fn new(name: &str, selector: Selector) -> Group {
        Group {
            name: name.into(),
            selector,
            overrides: Overrides::default(),
        }
    }

    /// The same group with its own base learning rate.
    pub fn lr(mut self, lr: f64) -> Group {
        self.overrides.lr = Some(lr);
        self
    }

    /// The same group with its own weight decay (0 for biases and LayerNorm weights).
    pub fn weight_decay(mut self, weight_decay: f64) -> Group {
        self.overrides.weight_decay = Some(weight_decay);
        self
    }

    /// The same group with its own `anneal_w` (0: no penalty, no θ* needed).
    pub fn anneal_w(mut self, anneal_w: f64) -> Group {
        self.overrides.anneal_w = Some(anneal_w);
        self
    }

    /// The same group with its own γ (`pretrain_cof`).
    pub fn pretrain_cof(mut self, pretrain_cof: f64) -> Group {
        self.overrides.pretrain_cof = Some(pretrain_cof);
        self
    }

    /// The same group with its own β1 and β2.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Group {
        self.overrides.beta1 = Some(beta1);
        self.overrides.beta2 = Some(beta2);
        self
    }

    /// The same group with its own ε.
    pub fn eps(mut self, eps: f64) -> Group {
        self.overrides.eps = Some(eps);
        self
    }

    /// The same group with bias correction on or off.
    pub fn correct_bias(mut self, on: bool) -> Group {
        self.overrides.correct_bias = Some(on);
        self
    }

    /// The same group with its own annealing shape.
    pub fn annealing(mut self, annealing: Annealing) -> Group {
        self.overrides.annealing = Some(annealing);
        self
    }

    /// The four groups of the official GLUE script: parameters under `encoder_prefix` are
    /// penalised (the pretrained encoder); others (the new head) get `anneal_w = 0`; names
    /// containing `bias` or `LayerNorm.weight` get no weight decay.
    pub fn glue_script(encoder_prefix: &str) -> Vec<Group> {
        let no_decay = || Selector::ContainsAny(vec!["bias".into(), "LayerNorm.weight".into()]);
        let encoder = || Selector::Prefix(encoder_prefix.into());
        let and = |a: Selector, b: Selector| Selector::And(vec![a, b]);
        let not = |s: Selector| Selector::Not(Box::new(s));
        vec![
            Group::new("encoder", and(encoder(), not(no_decay()))),
            Group::new("encoder_no_decay", and(encoder(), no_decay())).weight_decay(0.0),
            Group::new("head", and(not(encoder()), not(no_decay()))).anneal_w(0.0),
            Group::new("head_no_decay", and(not(encoder()), no_decay()))
                .anneal_w(0.0)
                .weight_decay(0.0),
        ]
    }
}
