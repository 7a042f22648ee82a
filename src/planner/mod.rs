//! Planning for semantic work: rules that keep language-model calls off rows that cheap work
//! can rule out first.
//!
//! - `cheap_first`: conjuncts of a filter that do not need an LM result run below the LM call.

pub mod cheap_first;
