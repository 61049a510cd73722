//! The bin layouts every bucket of a model uses, fixed from its card: a replica's buckets and the
//! console's merge of a fleet's buckets count into the same slots.

use crate::bins::{self, Bins};
use crate::bucket::Bucket;
use crate::card::ModelCard;

/// The bin layouts every bucket uses, fixed at start-up from the model card.
pub struct Layout {
    pub feature_names: Vec<String>,
    pub feature_bins: Vec<Bins>,
    pub decile_bins: Vec<Bins>,
    /// Each feature's decile slot from its fine slot (a value is searched for once, not twice).
    pub decile_from_fine: Vec<bins::Coarsening>,
    pub score_bins: Bins,
    pub latency_bins: Bins,
    /// Autoencoder: the anomaly threshold; binary classifier: the decision threshold.
    pub threshold: Option<f64>,
    /// Classifier: its classes (the predicted-class counts' order).
    pub classes: Vec<String>,
}

impl Layout {
    pub fn new(card: &ModelCard) -> Self {
        let feature_bins: Vec<Bins> = card.features.iter().map(bins::feature_bins).collect();
        let decile_bins: Vec<Bins> = card
            .features
            .iter()
            .map(|f| bins::decile_bins(&f.histogram))
            .collect();
        Self {
            feature_names: card.features.iter().map(|f| f.name.clone()).collect(),
            decile_from_fine: feature_bins
                .iter()
                .zip(&decile_bins)
                .map(|(fine, deciles)| bins::Coarsening::new(fine, deciles))
                .collect(),
            feature_bins,
            decile_bins,
            score_bins: bins::score_bins_for(card),
            latency_bins: bins::latency_bins(),
            threshold: card.score.threshold,
            classes: card
                .classifier
                .as_ref()
                .map(|c| c.classes.clone())
                .unwrap_or_default(),
        }
    }

    pub fn empty_bucket(&self, minute: i64) -> Bucket {
        let deciles: Vec<usize> = self.decile_bins.iter().map(Bins::len).collect();
        let mut b = Bucket::new(
            minute,
            self.feature_names.len(),
            bins::FINE_BINS + 2,
            &deciles,
            self.score_bins.len(),
        );
        b.predicted = vec![0; self.classes.len()];
        b
    }

    /// A digest of the bin layout: buckets are only merged with, or restored into, buckets of the
    /// same layout (a replica's persisted history, a fleet's replicas).
    pub fn fingerprint(&self) -> String {
        let text = format!(
            "{:?}|{:?}|{:?}|{:?}",
            self.feature_names,
            self.feature_bins
                .iter()
                .map(|b| &b.edges)
                .collect::<Vec<_>>(),
            self.decile_bins
                .iter()
                .map(|b| &b.edges)
                .collect::<Vec<_>>(),
            self.score_bins.edges
        );
        // FNV-1a, 64 bit.
        let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        format!("{hash:016x}")
    }
}
