//! Every parameter of the encoder in one flat `f32` buffer, with a layout that names its slices.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};

use super::{BertConfig, ModelError};

/// Names, shapes and offsets of the parameters in a flat buffer, in a fixed order: embeddings,
/// then each layer, then the pooler. Names are Hugging Face's without the `bert.` prefix.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamLayout {
    entries: Vec<(String, Vec<usize>, usize)>,
    index: HashMap<String, usize>,
    len: usize,
}

/// Tensors before the first encoder layer in the layout (three tables and a LayerNorm).
const EMBEDDING_PARAMS: usize = 5;

/// A parameter of an encoder layer, numbered in layout order: the passes find a layer's tensors
/// by position, with no formatted name per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LayerParam {
    QueryW,
    QueryB,
    KeyW,
    KeyB,
    ValueW,
    ValueB,
    AttnOutW,
    AttnOutB,
    AttnNormG,
    AttnNormB,
    InterW,
    InterB,
    OutW,
    OutB,
    OutNormG,
    OutNormB,
}

impl LayerParam {
    /// Every parameter of a layer, in layout order.
    const ALL: [LayerParam; 16] = [
        LayerParam::QueryW,
        LayerParam::QueryB,
        LayerParam::KeyW,
        LayerParam::KeyB,
        LayerParam::ValueW,
        LayerParam::ValueB,
        LayerParam::AttnOutW,
        LayerParam::AttnOutB,
        LayerParam::AttnNormG,
        LayerParam::AttnNormB,
        LayerParam::InterW,
        LayerParam::InterB,
        LayerParam::OutW,
        LayerParam::OutB,
        LayerParam::OutNormG,
        LayerParam::OutNormB,
    ];

    /// The name after `encoder.layer.{l}.` (Hugging Face's).
    fn name(self) -> &'static str {
        match self {
            LayerParam::QueryW => "attention.self.query.weight",
            LayerParam::QueryB => "attention.self.query.bias",
            LayerParam::KeyW => "attention.self.key.weight",
            LayerParam::KeyB => "attention.self.key.bias",
            LayerParam::ValueW => "attention.self.value.weight",
            LayerParam::ValueB => "attention.self.value.bias",
            LayerParam::AttnOutW => "attention.output.dense.weight",
            LayerParam::AttnOutB => "attention.output.dense.bias",
            LayerParam::AttnNormG => "attention.output.LayerNorm.weight",
            LayerParam::AttnNormB => "attention.output.LayerNorm.bias",
            LayerParam::InterW => "intermediate.dense.weight",
            LayerParam::InterB => "intermediate.dense.bias",
            LayerParam::OutW => "output.dense.weight",
            LayerParam::OutB => "output.dense.bias",
            LayerParam::OutNormG => "output.LayerNorm.weight",
            LayerParam::OutNormB => "output.LayerNorm.bias",
        }
    }

    /// A Linear layer's weight matrix.
    fn is_matrix(self) -> bool {
        matches!(
            self,
            LayerParam::QueryW
                | LayerParam::KeyW
                | LayerParam::ValueW
                | LayerParam::AttnOutW
                | LayerParam::InterW
                | LayerParam::OutW
        )
    }

    /// The tensor after this one in the layout: a weight's bias, a LayerNorm's β.
    pub(crate) fn bias(self) -> LayerParam {
        LayerParam::ALL[self as usize + 1]
    }
}

impl ParamLayout {
    /// The layout of a BERT encoder with pooler.
    pub fn bert(c: &BertConfig) -> ParamLayout {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![
            (
                "embeddings.word_embeddings.weight".into(),
                vec![c.vocab_size, h],
            ),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![c.max_position_embeddings, h],
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                vec![c.type_vocab_size, h],
            ),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        for l in 0..c.num_hidden_layers {
            let full = |s: &str| format!("encoder.layer.{l}.{s}");
            for p in LayerParam::ALL {
                let shape = match p {
                    LayerParam::InterW => vec![i, h],
                    LayerParam::InterB => vec![i],
                    LayerParam::OutW => vec![h, i],
                    p if p.is_matrix() => vec![h, h],
                    _ => vec![h],
                };
                shapes.push((full(p.name()), shape));
            }
        }
        shapes.push(("pooler.dense.weight".into(), vec![h, h]));
        shapes.push(("pooler.dense.bias".into(), vec![h]));
        ParamLayout::from_shapes(shapes)
    }

    fn from_shapes(shapes: Vec<(String, Vec<usize>)>) -> ParamLayout {
        let mut entries = Vec::with_capacity(shapes.len());
        let mut index = HashMap::new();
        let mut offset = 0;
        for (name, shape) in shapes {
            index.insert(name.clone(), entries.len());
            let n: usize = shape.iter().product();
            entries.push((name, shape, offset));
            offset += n;
        }
        ParamLayout {
            entries,
            index,
            len: offset,
        }
    }

    /// Total number of parameters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of parameters (tensors).
    pub fn tensors(&self) -> usize {
        self.entries.len()
    }

    /// The element range of the `i`-th tensor in layout order.
    pub(crate) fn entry_range(&self, i: usize) -> std::ops::Range<usize> {
        let (_, shape, offset) = &self.entries[i];
        *offset..offset + shape.iter().product::<usize>()
    }

    /// The tensors (layout indices) of encoder layer `l`.
    pub(crate) fn layer_entries(&self, l: usize) -> std::ops::Range<usize> {
        let first = EMBEDDING_PARAMS + LayerParam::ALL.len() * l;
        first..first + LayerParam::ALL.len()
    }

    /// The embeddings' tensors (layout indices): the first ones.
    pub(crate) fn embedding_entries(&self) -> std::ops::Range<usize> {
        0..EMBEDDING_PARAMS
    }

    /// `(name, shape, offset)` of every parameter, in buffer order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[usize], usize)> {
        self.entries
            .iter()
            .map(|(n, s, o)| (n.as_str(), s.as_slice(), *o))
    }

    /// The named slices of a flat buffer of this layout, in layout order (to hand parameters
    /// and gradients to the optimizer without copies).
    /// A buffer of another length is an error.
    pub fn split_mut<'a>(
        &self,
        mut data: &'a mut [f32],
    ) -> Result<Vec<(&str, &'a mut [f32])>, ModelError> {
        if data.len() != self.len {
            return Err(ModelError::Input(format!(
                "a buffer of {} values, but the layout has {}",
                data.len(),
                self.len
            )));
        }
        let mut out = Vec::with_capacity(self.entries.len());
        for (name, shape, _) in &self.entries {
            let (head, tail) = std::mem::take(&mut data).split_at_mut(shape.iter().product());
            out.push((name.as_str(), head));
            data = tail;
        }
        Ok(out)
    }

    /// The element range of parameter `p` of encoder layer `l` (`ParamLayout::bert`'s order:
    /// five embedding tensors, then sixteen per layer), found without a name.
    pub(crate) fn layer_range(&self, l: usize, p: LayerParam) -> std::ops::Range<usize> {
        let (_, shape, offset) =
            &self.entries[EMBEDDING_PARAMS + LayerParam::ALL.len() * l + p as usize];
        *offset..offset + shape.iter().product::<usize>()
    }

    /// The element range of a parameter in the flat buffer.
    pub fn range(&self, name: &str) -> Option<std::ops::Range<usize>> {
        let (_, shape, offset) = &self.entries[*self.index.get(name)?];
        Some(*offset..offset + shape.iter().product::<usize>())
    }
}

/// What loading found besides the parameters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Known non-parameter buffers that were skipped (`embeddings.position_ids`).
    pub buffers: Vec<String>,
    /// Tensors this architecture does not use (a pretraining head, say): reported, not used.
    pub unknown: Vec<String>,
}

/// The encoder's parameters in one flat buffer.
#[derive(Clone, Debug)]
pub struct BertWeights {
    /// The shape.
    pub config: BertConfig,
    /// Where each parameter lives in `data`.
    pub layout: ParamLayout,
    /// Every parameter.
    pub data: Vec<f32>,
}

/// Known buffers of Hugging Face BERT checkpoints that are not parameters.
const BUFFERS: [&str; 2] = ["embeddings.position_ids", "embeddings.token_type_ids"];

/// The canonical name of a checkpoint tensor: without `bert.`, with the old LayerNorm names
/// (`gamma`, `beta`) mapped to `weight`, `bias`.
fn canonical(name: &str) -> String {
    let name = name.strip_prefix("bert.").unwrap_or(name);
    name.replace("LayerNorm.gamma", "LayerNorm.weight")
        .replace("LayerNorm.beta", "LayerNorm.bias")
}

impl BertWeights {
    /// Reads a model folder: `config.json` and `model.safetensors`.
    pub fn from_folder(dir: impl AsRef<Path>) -> Result<(BertWeights, LoadReport), ModelError> {
        let dir = dir.as_ref();
        let config = BertConfig::from_file(dir.join("config.json"))?;
        Self::from_safetensors(config, dir.join("model.safetensors"))
    }

    /// Reads the parameters of `config` from a safetensors file.
    pub fn from_safetensors(
        config: BertConfig,
        path: impl AsRef<Path>,
    ) -> Result<(BertWeights, LoadReport), ModelError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.into(),
            source,
        })?;
        Self::from_safetensors_bytes(config, &bytes, path)
    }

    /// Reads the parameters of `config` from safetensors bytes; `path` only names them in
    /// errors.
    pub fn from_safetensors_bytes(
        config: BertConfig,
        bytes: &[u8],
        path: &Path,
    ) -> Result<(BertWeights, LoadReport), ModelError> {
        config.check().map_err(|reason| ModelError::Config {
            path: path.into(),
            reason,
        })?;
        let file = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Container {
            path: path.into(),
            reason: e.to_string(),
        })?;
        // Walk the architecture in order (so the first problem reported is always the same),
        // looking each parameter up under its canonical name.
        let mut by_canonical: HashMap<String, &str> = HashMap::new();
        let mut report = LoadReport::default();
        for name in file.names() {
            let canon = canonical(name);
            if BUFFERS.contains(&canon.as_str()) {
                report.buffers.push(name.to_string());
            } else {
                by_canonical.insert(canon, name);
            }
        }
        let layout = ParamLayout::bert(&config);
        // The parameters must fit in the file before anything is allocated for them.
        if layout.len().saturating_mul(4) > bytes.len() {
            return Err(ModelError::Config {
                path: path.into(),
                reason: format!(
                    "the configuration has {} parameters, more than the {} bytes of weights hold",
                    layout.len(),
                    bytes.len()
                ),
            });
        }
        let mut data = vec![0.0f32; layout.len()];
        for (canon, shape, offset) in layout.entries() {
            let name = by_canonical
                .remove(canon)
                .ok_or_else(|| ModelError::MissingTensor {
                    path: path.into(),
                    name: canon.to_string(),
                })?;
            let n: usize = shape.iter().product();
            read_tensor(&file, path, name, shape, &mut data[offset..offset + n])?;
        }
        report.unknown = by_canonical.into_values().map(String::from).collect();
        report.buffers.sort();
        report.unknown.sort();
        Ok((
            BertWeights {
                config,
                layout,
                data,
            },
            report,
        ))
    }

    /// A random initialisation like Hugging Face's `_init_weights`: normal(0, 0.02) for
    /// matrices and embeddings, 1 and 0 for LayerNorm, 0 for biases. Deterministic in `seed`.
    pub fn random(config: BertConfig, seed: u64) -> BertWeights {
        let layout = ParamLayout::bert(&config);
        let mut data = vec![0.0f32; layout.len()];
        let mut rng = Rng::new(seed);
        for (name, shape, offset) in layout.entries() {
            let slice = &mut data[offset..offset + shape.iter().product::<usize>()];
            if name.ends_with("LayerNorm.weight") {
                slice.fill(1.0);
            } else if shape.len() == 2 {
                slice
                    .iter_mut()
                    .for_each(|x| *x = rng.normal() as f32 * 0.02);
            }
        }
        BertWeights {
            config,
            layout,
            data,
        }
    }

    /// The parameters as safetensors bytes, under Hugging Face's names (without `bert.`).
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>, ModelError> {
        write_tensors(self.tensors(""))
    }

    /// Each parameter as (`prefix` + name, shape, values), in layout order.
    pub fn tensors<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (String, &'a [usize], &'a [f32])> + 'a {
        self.layout.entries().map(move |(name, shape, offset)| {
            let n: usize = shape.iter().product();
            (
                format!("{prefix}{name}"),
                shape,
                &self.data[offset..offset + n],
            )
        })
    }

    /// The values of a parameter, or `None` when the architecture has no parameter of that name.
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.layout.range(name).map(|r| &self.data[r])
    }

    /// The values of parameter `p` of encoder layer `l`.
    pub(crate) fn layer(&self, l: usize, p: LayerParam) -> &[f32] {
        &self.data[self.layout.layer_range(l, p)]
    }

    /// The values of a parameter the architecture has (the passes name only those).
    pub(crate) fn param(&self, name: &str) -> &[f32] {
        self.get(name)
            .expect("the forward and backward passes name parameters of the layout")
    }
}

/// A small seeded generator (SplitMix64 with Box-Muller): the same numbers on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The generator `n` draws further on, as if `next_u64` had been called `n` times
    /// (SplitMix64's state moves by a constant per draw): how threads draw their parts of one
    /// dropout mask with the bits of a single thread.
    pub fn skipped(&self, n: u64) -> Rng {
        Rng(self.0.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// The one writer of model files: f32 tensors (name, shape, values) as safetensors bytes.
pub fn write_tensors<'a>(
    tensors: impl IntoIterator<Item = (String, &'a [usize], &'a [f32])>,
) -> Result<Vec<u8>, ModelError> {
    let container = |reason: String| ModelError::Container {
        path: "<in memory>".into(),
        reason,
    };
    let views = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let bytes: &[u8] = bytemuck::cast_slice(values);
            safetensors::tensor::TensorView::new(Dtype::F32, shape.to_vec(), bytes)
                .map(|view| (name, view))
                .map_err(|e| container(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::tensor::serialize(views, None).map_err(|e| container(e.to_string()))
}

/// The one reader of model tensors: `name` from `file` (read from `path`) into `out`, which it
/// must fill exactly: f32, of shape `shape`.
pub fn read_tensor(
    file: &SafeTensors<'_>,
    path: &Path,
    name: &str,
    shape: &[usize],
    out: &mut [f32],
) -> Result<(), ModelError> {
    let view = file.tensor(name).map_err(|_| ModelError::MissingTensor {
        path: path.into(),
        name: name.to_string(),
    })?;
    if view.dtype() != Dtype::F32
        || view.shape() != shape
        || view.data().len() != std::mem::size_of_val(out)
    {
        return Err(ModelError::BadTensor {
            path: path.into(),
            name: name.to_string(),
            found: format!("{:?} {:?}", view.dtype(), view.shape()),
            expected: format!("F32 {shape:?}"),
        });
    }
    bytemuck::cast_slice_mut::<f32, u8>(out).copy_from_slice(view.data());
    Ok(())
}
