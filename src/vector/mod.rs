//! Vector indexes: the HNSW graph and the distance it is built for.

pub mod hnsw;
pub mod index;

use semsql_udfs::vector::{dot, l2_squared};

/// The distance an index orders by, from pgvector's operator classes: `vector_l2_ops` (`<->`),
/// `vector_cosine_ops` (`<=>`) and `vector_ip_ops` (`<#>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    L2,
    Cosine,
    InnerProduct,
}

impl Metric {
    /// A distance that orders as the operator does (L2 squared for `<->`; `1 - a·b` over unit
    /// vectors for `<=>`; `-a·b` for `<#>`).
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::L2 => l2_squared(a, b),
            Metric::Cosine => 1.0 - dot(a, b),
            Metric::InnerProduct => -dot(a, b),
        }
    }

    /// A vector as the index stores it: unit length for cosine (a zero vector stays zero).
    pub fn prepare(self, vector: &[f32]) -> Vec<f32> {
        match self {
            Metric::Cosine => {
                let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    vector.iter().map(|x| x / norm).collect()
                } else {
                    vector.to_vec()
                }
            }
            _ => vector.to_vec(),
        }
    }
}
