//! The demo's synthetic tasks, both over the same kind of input, so that what one task's training
//! does to the other can be measured directly.
//!
//! An input is `[CLS] w1 … w14 [SEP]` over 28 content words in four groups of seven. One group is
//! drawn as the topic; each word comes from the topic with probability 0.35 and is otherwise any
//! content word.
//! - **Source task** (the "pretraining"): which group is the most frequent (4 classes; inputs with
//!   a tie are redrawn). It needs a summary of the whole sentence.
//! - **Target task** (the fine-tuning): whether the most frequent group is 0 or 1 (2 classes). It
//!   is a new question that pretraining's knowledge answers, as GLUE tasks are for BERT: a
//!   fine-tuned model can solve it whether or not it keeps the finer distinctions (0 from 1, 2
//!   from 3) that the source task needs. Whether it keeps them is what forgetting is.

use recadam_std::bert::{Batch, BertConfig, Rng};

/// `[PAD]`, `[CLS]`, `[SEP]`.
const PAD: u32 = 0;
const CLS: u32 = 1;
const SEP: u32 = 2;
/// Content words are `FIRST_WORD..FIRST_WORD + GROUPS * GROUP_SIZE`.
const FIRST_WORD: u32 = 3;
const GROUPS: usize = 4;
const GROUP_SIZE: usize = 7;
/// Words per sentence.
const WORDS: usize = 14;
/// Probability that a word comes from the topic group.
const TOPIC_SHARE: f64 = 0.35;

/// The two tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyntheticTask {
    /// Most frequent group, 4 classes.
    Source,
    /// Group of the first word in {0, 1}, 2 classes.
    Target,
}

impl SyntheticTask {
    /// Number of classes.
    pub fn classes(self) -> usize {
        match self {
            SyntheticTask::Source => GROUPS,
            SyntheticTask::Target => 2,
        }
    }
}

/// A set of labelled sentences, all of the same length.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Token ids, `[len, seq]`.
    pub ids: Vec<u32>,
    /// Labels.
    pub labels: Vec<usize>,
    /// Tokens per sentence.
    pub seq: usize,
}

/// The small BERT the demo trains: 2 layers, width 64, 4 heads.
pub fn model_config() -> BertConfig {
    BertConfig {
        vocab_size: FIRST_WORD as usize + GROUPS * GROUP_SIZE,
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 256,
        max_position_embeddings: WORDS + 2,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
    }
}

fn group_of(word: u32) -> usize {
    (word - FIRST_WORD) as usize / GROUP_SIZE
}

/// The most frequent group (the caller makes sure it is unique).
fn topic_of(counts: &[usize; GROUPS]) -> usize {
    let max = counts.iter().max().copied().unwrap_or(0);
    counts.iter().position(|&c| c == max).unwrap_or(0)
}

/// One sentence and its label for `task`.
fn example(rng: &mut Rng, task: SyntheticTask) -> (Vec<u32>, usize) {
    loop {
        let topic = (rng.next_u64() % GROUPS as u64) as usize;
        let words: Vec<u32> = (0..WORDS)
            .map(|_| {
                let group = if rng.uniform() < TOPIC_SHARE {
                    topic
                } else {
                    (rng.next_u64() % GROUPS as u64) as usize
                };
                FIRST_WORD
                    + (group * GROUP_SIZE) as u32
                    + (rng.next_u64() % GROUP_SIZE as u64) as u32
            })
            .collect();
        let mut counts = [0usize; GROUPS];
        words.iter().for_each(|&w| counts[group_of(w)] += 1);
        let max = *counts.iter().max().unwrap_or(&0);
        if counts.iter().filter(|&&c| c == max).count() > 1 {
            continue;
        }
        let label = match task {
            SyntheticTask::Source => topic_of(&counts),
            SyntheticTask::Target => usize::from(topic_of(&counts) < 2),
        };
        let mut ids = Vec::with_capacity(WORDS + 2);
        ids.push(CLS);
        ids.extend(words);
        ids.push(SEP);
        return (ids, label);
    }
}

impl Dataset {
    /// `len` sentences for `task`, deterministic in `seed`.
    pub fn generate(task: SyntheticTask, len: usize, seed: u64) -> Dataset {
        let mut rng = Rng::new(seed);
        let mut data = Dataset {
            ids: Vec::with_capacity(len * (WORDS + 2)),
            labels: Vec::with_capacity(len),
            seq: WORDS + 2,
        };
        for _ in 0..len {
            let (ids, label) = example(&mut rng, task);
            data.ids.extend(ids);
            data.labels.push(label);
        }
        data
    }

    /// Number of sentences.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The sentences `rows` as a batch.
    pub fn batch(&self, rows: &[usize]) -> Batch {
        let ids: Vec<u32> = rows
            .iter()
            .flat_map(|&r| &self.ids[r * self.seq..(r + 1) * self.seq])
            .copied()
            .collect();
        Batch {
            batch: rows.len(),
            seq: self.seq,
            token_type_ids: vec![0; ids.len()],
            attention_mask: ids.iter().map(|&i| u32::from(i != PAD)).collect(),
            input_ids: ids,
        }
    }
}
