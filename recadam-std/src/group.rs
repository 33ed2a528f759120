//! Parameter groups: which parameters are pulled towards θ* and which get weight decay,
//! chosen by name, as the official GLUE script groups them (DESIGN 1.2).

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

/// A parameter group: the first group (in the order added) whose selector takes a parameter's
/// name owns it.
#[derive(Clone, Debug)]
pub struct Group {
    /// Shown in metrics and errors, and stored in checkpoints.
    pub name: String,
    /// Which parameters belong here.
    pub selector: Selector,
    /// Pulled towards θ* (needs a pretrained copy at registration); off gives plain AdamW, as
    /// for a new task head.
    pub penalty: bool,
    /// Decoupled weight decay; off for biases and LayerNorm weights.
    pub weight_decay: bool,
}

impl Group {
    /// A group with the penalty and weight decay on.
    pub fn new(name: &str, selector: Selector) -> Group {
        Group {
            name: name.into(),
            selector,
            penalty: true,
            weight_decay: true,
        }
    }

    /// The same group with the penalty on or off.
    pub fn penalty(mut self, on: bool) -> Group {
        self.penalty = on;
        self
    }

    /// The same group with weight decay on or off.
    pub fn weight_decay(mut self, on: bool) -> Group {
        self.weight_decay = on;
        self
    }

    /// The four groups of the official GLUE script: parameters under `encoder_prefix` are
    /// penalised (the pretrained encoder), others are not (the new head); names containing
    /// `bias` or `LayerNorm.weight` get no weight decay.
    pub fn glue_script(encoder_prefix: &str) -> Vec<Group> {
        let no_decay = || Selector::ContainsAny(vec!["bias".into(), "LayerNorm.weight".into()]);
        let encoder = || Selector::Prefix(encoder_prefix.into());
        let and = |a: Selector, b: Selector| Selector::And(vec![a, b]);
        let not = |s: Selector| Selector::Not(Box::new(s));
        vec![
            Group::new("encoder", and(encoder(), not(no_decay()))),
            Group::new("encoder_no_decay", and(encoder(), no_decay())).weight_decay(false),
            Group::new("head", and(not(encoder()), not(no_decay()))).penalty(false),
            Group::new("head_no_decay", and(not(encoder()), no_decay()))
                .penalty(false)
                .weight_decay(false),
        ]
    }
}
