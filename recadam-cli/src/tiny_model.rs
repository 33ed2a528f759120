//! A tiny BERT model folder made from nothing: a character-level WordPiece tokenizer (letters,
//! digits and punctuation, each also as a `##` continuation), a small random encoder, and its
//! config (and `vocab.txt`). The folder has the layout of a Hugging Face model folder, so every command runs on it
//! in seconds: the end-to-end tests fine-tune it on the real GLUE files.

use std::path::Path;

use recadam_std::bert::{BertConfig, BertWeights};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::Tokenizer;

/// `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]` take ids 0-4.
const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

fn vocabulary() -> Vec<String> {
    let chars: Vec<char> = ('a'..='z')
        .chain('0'..='9')
        .chain("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".chars())
        .collect();
    SPECIAL
        .iter()
        .map(|s| s.to_string())
        .chain(chars.iter().map(|c| c.to_string()))
        .chain(chars.iter().map(|c| format!("##{c}")))
        .collect()
}

/// The tiny model's shape for a vocabulary of `vocab` pieces.
pub fn config(vocab: usize) -> BertConfig {
    BertConfig {
        vocab_size: vocab,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 128,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
    }
}

/// Writes `config.json`, `vocab.txt`, `model.safetensors` (random weights from `seed`) and `tokenizer.json`
/// into `dir`, creating it.
pub fn write(dir: &Path, seed: u64) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    let vocab = vocabulary();
    // vocab.txt as BERT folders have it: one piece per line, the line number is the id.
    let vocab_file = dir.join("vocab.txt");
    std::fs::write(&vocab_file, vocab.join("\n") + "\n").map_err(|e| err(&e))?;
    let model = WordPiece::from_file(&vocab_file.to_string_lossy())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| err(&e))?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::default()))
        .map_err(|e| err(&e))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    let template = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .and_then(|t| t.try_pair("[CLS] $A [SEP] $B:1 [SEP]:1"))
        .map_err(|e| err(&e))?
        .special_tokens(vec![("[CLS]", 2), ("[SEP]", 3)])
        .build()
        .map_err(|e| err(&e))?;
    tokenizer.with_post_processor(Some(template));
    tokenizer
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| err(&e))?;
    let config = config(vocab.len());
    let json = serde_json::json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_position_embeddings,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_act": config.hidden_act,
        "hidden_dropout_prob": config.hidden_dropout_prob,
        "attention_probs_dropout_prob": config.attention_probs_dropout_prob,
    });
    std::fs::write(dir.join("config.json"), json.to_string()).map_err(|e| err(&e))?;
    let weights = BertWeights::random(config, seed);
    let bytes = weights.to_safetensors_bytes().map_err(|e| err(&e))?;
    std::fs::write(dir.join("model.safetensors"), bytes).map_err(|e| err(&e))
}
