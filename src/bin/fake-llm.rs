//! `fake-llm`: the fake OpenAI-compatible server, on its own, for benchmarks and for trying
//! semsql with no model at hand (see `semsql::fake_llm`).

use clap::Parser;
use semsql::fake_llm::{Behaviour, FakeLlm};

/// A fake OpenAI-compatible model server with deterministic answers and injectable faults.
#[derive(Parser)]
#[command(name = "fake-llm", version)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: String,
    /// Delay before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Chance per request of a 429 answer.
    #[arg(long, default_value_t = 0.0)]
    rate_429: f64,
    /// Chance per request of a 500 answer.
    #[arg(long, default_value_t = 0.0)]
    rate_500: f64,
    /// Chance per chat request of a malformed answer.
    #[arg(long, default_value_t = 0.0)]
    rate_malformed: f64,
    /// Dimensions of the embeddings.
    #[arg(long, default_value_t = 16)]
    embedding_dims: usize,
    /// Require this API key (as `Authorization: Bearer ...`).
    #[arg(long, env = "FAKE_LLM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let behaviour = Behaviour {
        latency_ms: args.latency_ms,
        rate_429: args.rate_429,
        rate_500: args.rate_500,
        rate_malformed: args.rate_malformed,
        embedding_dims: Some(args.embedding_dims),
        api_key: args.api_key,
        ..Behaviour::default()
    };
    let server = FakeLlm::start(&args.listen, behaviour).await?;
    println!(
        "fake-llm listening on {} (base_url {})",
        server.addr,
        server.base_url()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
