//! Tokenisation with the model folder's `tokenizer.json` (the `tokenizers` crate): single texts
//! and pairs as `[CLS] a [SEP] b [SEP]`, token types, longest-first truncation, padding to the
//! longest in the batch, as Hugging Face's tokenizer call does.

use std::path::Path;

use tokenizers::{
    EncodeInput, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams, TruncationStrategy,
};

use super::ModelError;

/// A padded batch of token ids, row-major `[batch, seq]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// Number of sequences.
    pub batch: usize,
    /// Padded length.
    pub seq: usize,
    /// Word-piece ids (0 = `[PAD]`).
    pub input_ids: Vec<u32>,
    /// Segment of each token (0 for the first text and padding, 1 for the second).
    pub token_type_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
}

/// The tokenizer of a BERT model folder, set up once for one maximum length.
#[derive(Clone, Debug)]
pub struct BertTokenizer {
    inner: Tokenizer,
    max_len: usize,
}

impl BertTokenizer {
    /// Loads `tokenizer.json`; encodings are truncated (longest first) to `max_len` tokens
    /// and padded to the longest in the batch.
    pub fn from_file(path: impl AsRef<Path>, max_len: usize) -> Result<BertTokenizer, ModelError> {
        let path = path.as_ref();
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                ..TruncationParams::default()
            }))
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let pad_id = inner.get_padding().map_or(0, |p| p.pad_id);
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            ..PaddingParams::default()
        }));
        Ok(BertTokenizer { inner, max_len })
    }

    /// The maximum number of tokens per row.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Encodes texts and text pairs as one padded batch.
    pub fn encode(&self, texts: &[(&str, Option<&str>)]) -> Result<Batch, ModelError> {
        let inputs: Vec<EncodeInput> = texts
            .iter()
            .map(|&(a, b)| match b {
                Some(b) => (a, b).into(),
                None => a.into(),
            })
            .collect();
        let encodings = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        let seq = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut batch = Batch {
            batch: encodings.len(),
            seq,
            ..Batch::default()
        };
        for e in &encodings {
            batch.input_ids.extend_from_slice(e.get_ids());
            batch.token_type_ids.extend_from_slice(e.get_type_ids());
            batch
                .attention_mask
                .extend_from_slice(e.get_attention_mask());
        }
        Ok(batch)
    }
}
