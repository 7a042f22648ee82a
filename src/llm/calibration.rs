//! `rows_per_request = 'auto'`: the batch size a model answers as well as one row at a time,
//! found per model and function on first use and kept in `model-calibrations.json` in the
//! data folder.
//!
//! Calibrating asks a sample of a call's rows (spread evenly over them) one at a time (those answers are the rows'
//! answers, and the reference), then the same sample in batches of 16, 8, 4 and 2 rows, and
//! keeps the largest size whose answers agree with the one-row answers on at least
//! [`MIN_AGREEMENT`] of the sample; 1 when none does. Small models lose accuracy in large
//! batches on some tasks and not others (docs/llm.md, "Local models"), which is why the size is
//! kept per function. A calibration is redone after [`RECHECK_ROWS`] rows or
//! [`RECHECK_AFTER`], and whenever the model's endpoint or provider model changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use semsql_udfs::lm::AnswerKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::models::ModelOptions;

/// Batch sizes tried, largest first.
pub const CANDIDATE_SIZES: [usize; 4] = [16, 8, 4, 2];
/// Rows in a calibration sample.
pub const SAMPLE_ROWS: usize = 16;
/// A call with fewer distinct rows than this does not calibrate; it asks one row per request.
pub const MIN_SAMPLE_ROWS: usize = 8;
/// Share of the sample a batch size must answer as one-row requests did.
pub const MIN_AGREEMENT: f64 = 0.95;
/// Rows answered under a calibration before it is checked again.
pub const RECHECK_ROWS: u64 = 5_000;
/// Age after which a calibration is checked again.
pub const RECHECK_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

const FILE: &str = "model-calibrations.json";

/// One model's calibration for one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The chosen batch size.
    pub rows_per_request: usize,
    /// Rows in the sample.
    pub sample: usize,
    /// (batch size, share of the sample whose batched answer agreed), largest size first, for
    /// each size tried.
    pub agreement: Vec<(usize, f64)>,
    /// Seconds since the Unix epoch.
    pub calibrated_at: u64,
    /// Rows answered under this calibration since it was made (not kept across restarts).
    #[serde(skip)]
    pub rows_since: u64,
}

impl Calibration {
    fn stale(&self) -> bool {
        let age = now().saturating_sub(self.calibrated_at);
        self.rows_since >= RECHECK_ROWS || age >= RECHECK_AFTER.as_secs()
    }

    /// `16 (agreement 1.00 at 16; sample 16)`.
    pub fn summary(&self) -> String {
        let tried: Vec<String> = self
            .agreement
            .iter()
            .map(|(size, share)| format!("{share:.2} at {size}"))
            .collect();
        format!(
            "{} (agreement {}; sample {})",
            self.rows_per_request,
            tried.join(", "),
            self.sample
        )
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Every calibration, by model and function.
#[derive(Debug, Default)]
pub struct Calibrations {
    path: Option<PathBuf>,
    entries: Mutex<BTreeMap<String, Calibration>>,
}

/// The key of a model's calibration for a function: its name, endpoint, provider model and
/// output mode, so that pointing the name at another model, or asking it differently, starts
/// over.
fn key(model_name: &str, options: &ModelOptions, function: &str) -> String {
    format!(
        "{model_name} {} {} {:?} {function}",
        options.base_url, options.model, options.structured_output
    )
}

impl Calibrations {
    /// Loads the calibrations kept in `data_dir` (none without one). A file that does not parse
    /// is set aside as `.damaged` and calibration starts over: it only costs requests.
    pub fn open(data_dir: Option<&Path>) -> Self {
        let path = data_dir.map(|dir| dir.join(FILE));
        let entries = match path.as_ref().map(std::fs::read) {
            Some(Ok(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(entries) => entries,
                Err(error) => {
                    let path = path.as_ref().expect("read from a path");
                    tracing::warn!("{}: {error}; calibrating models again", path.display());
                    let _ = std::fs::rename(path, path.with_extension("json.damaged"));
                    BTreeMap::new()
                }
            },
            _ => BTreeMap::new(),
        };
        Calibrations {
            path,
            entries: Mutex::new(entries),
        }
    }

    /// The current calibration of `model_name` for `function`, if one is kept and not due for a
    /// check.
    pub fn current(
        &self,
        model_name: &str,
        options: &ModelOptions,
        function: &str,
    ) -> Option<Calibration> {
        let entries = self.entries.lock().expect("calibrations lock");
        entries
            .get(&key(model_name, options, function))
            .filter(|calibration| !calibration.stale())
            .cloned()
    }

    /// Every kept calibration of `model_name` (whatever its age), by function.
    pub fn of_model(&self, model_name: &str, options: &ModelOptions) -> Vec<(String, Calibration)> {
        let prefix = key(model_name, options, "");
        let entries = self.entries.lock().expect("calibrations lock");
        entries
            .iter()
            .filter_map(|(key, calibration)| {
                Some((key.strip_prefix(&prefix)?.to_owned(), calibration.clone()))
            })
            .collect()
    }

    /// Counts rows answered under a calibration, towards its next check.
    pub fn count_rows(&self, model_name: &str, options: &ModelOptions, function: &str, rows: u64) {
        let mut entries = self.entries.lock().expect("calibrations lock");
        if let Some(calibration) = entries.get_mut(&key(model_name, options, function)) {
            calibration.rows_since += rows;
        }
    }

    /// Keeps a new calibration and writes the file (atomically: a new file renamed over the
    /// old). A write that fails is logged; the calibration still holds in memory.
    pub fn store(
        &self,
        model_name: &str,
        options: &ModelOptions,
        function: &str,
        calibration: Calibration,
    ) {
        let mut entries = self.entries.lock().expect("calibrations lock");
        entries.insert(key(model_name, options, function), calibration);
        if let Some(path) = &self.path {
            let written = serde_json::to_vec_pretty(&*entries)
                .map_err(std::io::Error::other)
                .and_then(|bytes| {
                    let temporary = path.with_extension("json.tmp");
                    std::fs::write(&temporary, bytes)?;
                    std::fs::rename(&temporary, path)
                });
            if let Err(error) = written {
                tracing::warn!("could not write {}: {error}", path.display());
            }
        }
    }
}

/// Whether a batched answer agrees with the one-row answer: the same JSON value, text compared
/// without case or surrounding space, numbers within a tenth of their range.
pub fn agrees(batched: &Value, alone: &Value, answer: &AnswerKind) -> bool {
    match (answer, batched, alone) {
        (AnswerKind::Number { min, max }, Value::Number(a), Value::Number(b)) => {
            match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => (a - b).abs() <= (max - min).abs() / 10.0,
                _ => false,
            }
        }
        (_, Value::String(a), Value::String(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
        _ => batched == alone,
    }
}

/// Calibration from the share of agreement measured at each size tried (largest first): the
/// largest size with at least [`MIN_AGREEMENT`], else 1.
pub fn choose(sample: usize, agreement: Vec<(usize, f64)>) -> Calibration {
    let rows_per_request = agreement
        .iter()
        .find(|(_, share)| *share >= MIN_AGREEMENT)
        .map_or(1, |(size, _)| *size);
    Calibration {
        rows_per_request,
        sample,
        agreement,
        calibrated_at: now(),
        rows_since: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(base_url: &str) -> ModelOptions {
        ModelOptions::parse(
            "m",
            &[("base_url", base_url), ("model", "a")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn the_largest_agreeing_size_is_kept_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let calibrations = Calibrations::open(Some(dir.path()));
        let model = options("http://x");
        let chosen = choose(16, vec![(16, 0.75), (8, 0.9375), (4, 1.0)]);
        assert_eq!(chosen.rows_per_request, 4);
        assert_eq!(choose(16, vec![(16, 0.5), (2, 0.5)]).rows_per_request, 1);
        calibrations.store("m", &model, "llm_filter", chosen.clone());
        let reopened = Calibrations::open(Some(dir.path()));
        assert_eq!(reopened.current("m", &model, "llm_filter"), Some(chosen));
        assert_eq!(reopened.current("m", &model, "llm_score"), None);
        // Another endpoint under the same name is another model.
        assert_eq!(
            reopened.current("m", &options("http://y"), "llm_filter"),
            None
        );
        reopened.count_rows("m", &model, "llm_filter", RECHECK_ROWS);
        assert_eq!(
            reopened.current("m", &model, "llm_filter"),
            None,
            "due for a check"
        );
    }

    #[test]
    fn a_damaged_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let calibrations = Calibrations::open(Some(dir.path()));
        assert!(calibrations.of_model("m", &options("http://x")).is_empty());
        assert!(dir.path().join("model-calibrations.json.damaged").exists());
    }

    #[test]
    fn agreement_allows_for_case_and_a_tenth_of_a_range() {
        let score = AnswerKind::Number { min: 0.0, max: 1.0 };
        assert!(agrees(&json!(0.8), &json!(0.75), &score));
        assert!(!agrees(&json!(0.5), &json!(0.75), &score));
        assert!(agrees(
            &json!(" Billing"),
            &json!("billing"),
            &AnswerKind::Text
        ));
        assert!(!agrees(&json!(true), &json!(false), &AnswerKind::Boolean));
    }
}
