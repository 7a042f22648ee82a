//! The checked-in list of DataFusion records that differ over semsql's wire, each with a reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use super::client::Protocol;

/// What one run saw: per record, the error of each protocol that failed.
#[derive(Default)]
pub struct Observed {
    failed: BTreeMap<String, (Option<String>, Option<String>)>,
    records: BTreeMap<String, usize>,
}

impl Observed {
    pub fn add_file(
        &mut self,
        file: &str,
        records: usize,
        protocol: Protocol,
        failed: BTreeMap<String, String>,
    ) {
        self.records.insert(file.to_owned(), records);
        for (key, error) in failed {
            let entry = self.failed.entry(key).or_default();
            match protocol {
                Protocol::Simple => entry.0 = Some(error),
                Protocol::Extended => entry.1 = Some(error),
            }
        }
    }

    pub fn failed_count(&self, protocol: Protocol) -> usize {
        self.failed
            .values()
            .filter(|(simple, extended)| match protocol {
                Protocol::Simple => simple.is_some(),
                Protocol::Extended => extended.is_some(),
            })
            .count()
    }

    fn protocols(&self, key: &str) -> Option<&'static str> {
        match self.failed.get(key)? {
            (Some(_), Some(_)) => Some("both"),
            (Some(_), None) => Some("simple"),
            (None, Some(_)) => Some("extended"),
            (None, None) => None,
        }
    }

    /// One line per failing record: key, protocols, error (first protocol's, on one line).
    pub fn report(&self) -> String {
        let mut out = String::new();
        for (key, (simple, extended)) in &self.failed {
            let error = simple.as_ref().or(extended.as_ref()).unwrap();
            let flat = error.replace('\n', " ⏎ ");
            let flat: String = flat.chars().take(4000).collect();
            writeln!(
                out,
                "{key}\t{}\t{flat}",
                self.protocols(key).unwrap_or("none")
            )
            .unwrap();
        }
        out
    }
}

/// The file the records whose difference is known and explained.
pub struct Expectations {
    entries: BTreeMap<String, (String, String)>,
    header: String,
}

/// The file a record key belongs to (`part < file.slt:line` belongs to `file.slt`).
fn file_of(key: &str) -> &str {
    let outer = key.rsplit(" < ").next().unwrap_or(key);
    outer.rsplit_once(':').map_or(outer, |(file, _)| file)
}

impl Expectations {
    pub fn load(path: &Path) -> Expectations {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut entries = BTreeMap::new();
        let mut header = String::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                if entries.is_empty() {
                    header.push_str(line);
                    header.push('\n');
                }
                continue;
            }
            let mut fields = line.split('\t');
            let (Some(key), Some(protocols), Some(reason)) =
                (fields.next(), fields.next(), fields.next())
            else {
                panic!("{}: malformed line {line:?}", path.display());
            };
            entries.insert(key.to_owned(), (protocols.to_owned(), reason.to_owned()));
        }
        Expectations { entries, header }
    }

    fn covers(&self, key: &str, protocol: &str) -> bool {
        self.entries
            .get(key)
            .is_some_and(|(listed, _)| listed == "both" || listed == "either" || listed == protocol)
    }

    /// Failing records the file does not list (for the protocol that failed).
    pub fn unexpected(&self, observed: &Observed) -> Vec<String> {
        let mut out = Vec::new();
        for (key, (simple, extended)) in &observed.failed {
            for (protocol, error) in [("simple", simple), ("extended", extended)] {
                if let Some(error) = error {
                    if !self.covers(key, protocol) {
                        let flat: String = error.replace('\n', " ⏎ ").chars().take(400).collect();
                        out.push(format!("{key} ({protocol}): {flat}"));
                    }
                }
            }
        }
        out
    }

    /// Counts per reason, and listed records that passed in this run.
    pub fn summary(&self, observed: &Observed, files: &[String]) -> String {
        let run: BTreeSet<&str> = files.iter().map(String::as_str).collect();
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        let mut now_pass = Vec::new();
        for (key, (_, reason)) in &self.entries {
            if !run.contains(file_of(key)) {
                continue;
            }
            if observed.protocols(key).is_some() {
                *reasons.entry(reason).or_default() += 1;
            } else if self.entries[key].0 != "either" {
                now_pass.push(key.as_str());
            }
        }
        let mut out = String::from("  listed differences by reason:\n");
        for (reason, count) in reasons {
            writeln!(out, "    {count:5}  {reason}").unwrap();
        }
        if !now_pass.is_empty() {
            writeln!(
                out,
                "  {} listed records passed this time (SEMSQL_CONFORMANCE_BLESS=1 drops them): {}",
                now_pass.len(),
                now_pass
                    .iter()
                    .take(20)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .unwrap();
        }
        out
    }

    /// Rewrites the file from this run: failing records are listed with the reason `classify`
    /// gives, passing ones dropped (but those whose outcome varies, `either`); with a file
    /// filter, other files' entries stay.
    pub fn bless(&self, observed: &Observed, files: &[String], filtered: bool, path: &Path) {
        let run: BTreeSet<&str> = files.iter().map(String::as_str).collect();
        let mut entries: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (key, entry) in &self.entries {
            // Other files' entries stay when only some files ran; a record whose outcome
            // varies from run to run stays listed when it passed this time.
            if (filtered && !run.contains(file_of(key))) || entry.0 == "either" {
                entries.insert(key.clone(), entry.clone());
            }
        }
        for (key, (simple, extended)) in &observed.failed {
            // A listed record keeps its reason (a person may have refined the first guess).
            let reason = match self.entries.get(key) {
                Some((_, reason)) => reason.clone(),
                None => super::classify(simple.as_ref().or(extended.as_ref()).unwrap()).to_owned(),
            };
            // Outcomes that vary from run to run: memory use, and row order where none is set.
            let protocols = if reason == super::MEMORY || reason == super::ORDER {
                "either".to_owned()
            } else {
                observed.protocols(key).unwrap().to_owned()
            };
            entries.insert(key.clone(), (protocols, reason));
        }
        let mut text = self.header.clone();
        if text.is_empty() {
            text.push_str(super::HEADER);
        }
        for (key, (protocols, reason)) in entries {
            writeln!(text, "{key}\t{protocols}\t{reason}").unwrap();
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}
