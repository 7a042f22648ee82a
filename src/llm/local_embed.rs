//! The offline embedding model, run in-process: all-MiniLM-L6-v2 (384 dimensions) on candle,
//! computed as sentence-transformers does: pad to the longest text of a batch, truncate at 256
//! tokens, mean of the token vectors under the attention mask, L2-normalised.
//!
//! The files (`model.safetensors`, `tokenizer.json`, `config.json`) come from
//! `semsql fetch-models` (see `model_files`, which also says where they are looked for). The
//! model is loaded on first use, so a server without it starts and only `embed()` with the
//! local model fails.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use semsql_udfs::lm::LmError;

use super::bert::{BertConfig, BertEncoder};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The name `embed()` and `semsql.embedding_model` use for the local model.
pub const LOCAL_MODEL: &str = "local";
/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2 (its tokenizer.json says 128).
const MAX_TOKENS: usize = 256;
/// Texts per forward pass.
pub const BATCH: usize = 32;

pub struct LocalEmbedder {
    model: BertEncoder,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalEmbedder")
    }
}

fn missing(dir: &Path, what: impl std::fmt::Display) -> LmError {
    LmError::new(
        "58P01",
        format!(
            "the local embedding model is not usable in {} ({what}); run `semsql fetch-models`, \
             set llm.local_model_dir in the config file, or SET semsql.embedding_model to a \
             model with an embeddings endpoint",
            dir.display()
        ),
    )
}

impl LocalEmbedder {
    /// Loads the model from `dir`.
    pub fn load(dir: &Path) -> Result<Self, LmError> {
        let read = |name: &str| -> Result<Vec<u8>, LmError> {
            std::fs::read(dir.join(name)).map_err(|err| missing(dir, format!("{name}: {err}")))
        };
        let config: BertConfig = serde_json::from_slice(&read("config.json")?)
            .map_err(|err| missing(dir, format!("config.json: {err}")))?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|err| missing(dir, format!("tokenizer.json: {err}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|err| missing(dir, format!("tokenizer.json: {err}")))?;
        let device = Device::Cpu;
        let weights =
            VarBuilder::from_buffered_safetensors(read("model.safetensors")?, DType::F32, &device)
                .map_err(|err| missing(dir, format!("model.safetensors: {err}")))?;
        let model = BertEncoder::load(weights, &config)
            .map_err(|err| missing(dir, format!("model.safetensors: {err}")))?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// The unit-length embedding of every text, in order (CPU-bound: call it off the async
    /// threads).
    pub fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, LmError> {
        let failed =
            |err: &dyn std::fmt::Display| LmError::service(format!("local embedding model: {err}"));
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.iter().map(String::as_str).collect::<Vec<_>>(), true)
            .map_err(|err| failed(&err))?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let ids: Vec<u32> = encodings
            .iter()
            .flat_map(|e| e.get_ids().iter().copied())
            .collect();
        let mask: Vec<u32> = encodings
            .iter()
            .flat_map(|e| e.get_attention_mask().iter().copied())
            .collect();
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (rows, width), &self.device)?;
            let mask = Tensor::from_vec(mask, (rows, width), &self.device)?;
            let hidden = self.model.forward(&ids, &mask)?;
            // Mean over the real tokens only: padding must not pull the average.
            let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&weights)?.sum(1)?;
            let counts = weights.sum(1)?;
            let mean = summed.broadcast_div(&counts)?;
            let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
            mean.broadcast_div(&norms)?.to_vec2::<f32>()
        };
        run().map_err(|err| failed(&err))
    }
}
