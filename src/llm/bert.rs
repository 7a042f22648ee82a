//! The BERT encoder the offline embedding model (all-MiniLM-L6-v2) runs, written on candle-nn's
//! layers.
//!
//! semsql needs one model family, and this forward pass is small; candle-transformers, which
//! holds it among a hundred other models, was the longest single crate of a release build from
//! scratch (docs/benchmarks.md, "Build time"). The arithmetic is BERT's as Hugging Face's
//! `BertModel` computes it (post-norm layers, exact GELU, masked keys pushed to `f32::MIN`);
//! `tests/integration/vectors.rs` checks the vectors against sentence-transformers' own.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The fields of a Hugging Face `config.json` this encoder reads.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_hidden_act() -> String {
    "gelu".to_string()
}

/// The activation of the feed-forward layers, as `transformers.activations` names them.
#[derive(Debug, Clone, Copy)]
enum Activation {
    /// `gelu`: the exact form, x·Φ(x).
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
}

impl Activation {
    fn from_config(name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => candle_core::bail!("hidden_act {other:?} is not supported"),
        }
    }

    fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
            Self::Relu => xs.relu(),
        }
    }
}

/// Word, position and token-type embeddings, summed and normalised.
struct Embeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, config: &BertConfig) -> Result<Self> {
        Ok(Self {
            words: embedding(
                config.vocab_size,
                config.hidden_size,
                vb.pp("word_embeddings"),
            )?,
            positions: embedding(
                config.max_position_embeddings,
                config.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_types: embedding(
                config.type_vocab_size,
                config.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: layer_norm(
                config.hidden_size,
                config.layer_norm_eps,
                vb.pp("LayerNorm"),
            )?,
        })
    }

    fn forward(&self, ids: &Tensor, token_types: &Tensor) -> Result<Tensor> {
        let (_, width) = ids.dims2()?;
        let positions = Tensor::arange(0u32, width as u32, ids.device())?;
        let sum = (self.words.forward(ids)? + self.token_types.forward(token_types)?)?
            .broadcast_add(&self.positions.forward(&positions)?)?;
        self.norm.forward(&sum)
    }
}

/// One encoder layer: multi-head self-attention and a feed-forward block, each followed by a
/// residual sum and a layer norm.
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    heads: usize,
    activation: Activation,
}

impl Layer {
    fn load(vb: VarBuilder, config: &BertConfig, activation: Activation) -> Result<Self> {
        let size = config.hidden_size;
        let attention = vb.pp("attention");
        let own = attention.pp("self");
        Ok(Self {
            query: linear(size, size, own.pp("query"))?,
            key: linear(size, size, own.pp("key"))?,
            value: linear(size, size, own.pp("value"))?,
            attention_out: linear(size, size, attention.pp("output").pp("dense"))?,
            attention_norm: layer_norm(
                size,
                config.layer_norm_eps,
                attention.pp("output").pp("LayerNorm"),
            )?,
            intermediate: linear(
                size,
                config.intermediate_size,
                vb.pp("intermediate").pp("dense"),
            )?,
            output: linear(config.intermediate_size, size, vb.pp("output").pp("dense"))?,
            output_norm: layer_norm(size, config.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: config.num_attention_heads,
            activation,
        })
    }

    /// `mask_bias` is 0 for a real token and `f32::MIN` for padding, shaped (batch, 1, 1, width)
    /// so it applies to every head and every query position.
    fn forward(&self, hidden: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let (batch, width, size) = hidden.dims3()?;
        let head_size = size / self.heads;
        // (batch, width, size) -> (batch, heads, width, head_size)
        let split = |xs: Tensor| -> Result<Tensor> {
            xs.reshape((batch, width, self.heads, head_size))?
                .transpose(1, 2)?
                .contiguous()
        };
        let query = split(self.query.forward(hidden)?)?;
        let key = split(self.key.forward(hidden)?)?;
        let value = split(self.value.forward(hidden)?)?;
        let scores = (query.matmul(&key.t()?)? / (head_size as f64).sqrt())?;
        let weights = candle_nn::ops::softmax(&scores.broadcast_add(mask_bias)?, D::Minus1)?;
        let context = weights
            .matmul(&value)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, width, size))?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + hidden)?)?;
        let expanded = self
            .activation
            .apply(&self.intermediate.forward(&attended)?)?;
        self.output_norm
            .forward(&(self.output.forward(&expanded)? + attended)?)
    }
}

/// A BERT encoder: token ids in, one vector per token out (the last layer's hidden states).
pub struct BertEncoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl BertEncoder {
    /// Loads the weights, named as Hugging Face saves them: at the top level
    /// (`embeddings.…`, `encoder.layer.N.…`, as sentence-transformers' models are) or under the
    /// model type's prefix (`bert.embeddings.…`).
    pub fn load(vb: VarBuilder, config: &BertConfig) -> Result<Self> {
        let activation = Activation::from_config(&config.hidden_act)?;
        let prefixed = config.model_type.as_deref().unwrap_or("bert");
        let root = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp(prefixed)
        };
        let embeddings = Embeddings::load(root.pp("embeddings"), config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|index| {
                Layer::load(
                    root.pp("encoder").pp(format!("layer.{index}")),
                    config,
                    activation,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { embeddings, layers })
    }

    /// The hidden states of the last layer, (batch, width, hidden_size), for `ids` and
    /// `attention_mask` (1 for a token, 0 for padding), both (batch, width) of u32.
    pub fn forward(&self, ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (batch, width) = ids.dims2()?;
        let token_types = ids.zeros_like()?;
        let mut hidden = self.embeddings.forward(ids, &token_types)?;
        // Padding gets the most negative float added before the softmax, so it takes no weight.
        let padding = (1.0 - attention_mask.to_dtype(DType::F32)?)?;
        let mask_bias = (padding * f64::from(f32::MIN))?.reshape((batch, 1, 1, width))?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, &mask_bias)?;
        }
        Ok(hidden)
    }
}
