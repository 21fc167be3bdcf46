//! Prices from a ConfigMap: the operator's prices file (the format of `gantry serve --prices`) under a
//! key of a ConfigMap, merged over the shipped defaults by [`Catalogue::with_overrides`].
//!
//! [`PriceBook`] keeps the catalogue in force and the `resourceVersion` it came from: a ConfigMap
//! already seen is not parsed again, a bad one is reported once and the last good catalogue kept, and
//! an absent ConfigMap (or key, or an empty file) means the shipped defaults.

use gantry_cost::Catalogue;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

/// Where the prices are: ConfigMap `name` in `namespace`, file under `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PricesConfigMap {
    /// Namespace of the ConfigMap.
    pub namespace: String,
    /// Name of the ConfigMap.
    pub name: String,
    /// Key of the prices file in its `data`.
    pub key: String,
}

/// Default name of the prices ConfigMap.
pub const DEFAULT_NAME: &str = "gantry-prices";
/// Default key of the prices file in the ConfigMap.
pub const DEFAULT_KEY: &str = "prices.yaml";

impl Default for PricesConfigMap {
    fn default() -> Self {
        PricesConfigMap {
            namespace: crate::manifests::DEFAULT_NAMESPACE.to_string(),
            name: DEFAULT_NAME.to_string(),
            key: DEFAULT_KEY.to_string(),
        }
    }
}

impl PricesConfigMap {
    /// Reads the ConfigMap (`None` when it does not exist).
    pub async fn fetch(&self, client: Client) -> Result<Option<ConfigMap>, kube::Error> {
        Api::<ConfigMap>::namespaced(client, &self.namespace)
            .get_opt(&self.name)
            .await
    }
}

/// What [`PriceBook::apply`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriceUpdate {
    /// The same ConfigMap version (or the same absence) as before: nothing changed.
    Unchanged,
    /// The ConfigMap's prices are now in force (merged over the defaults).
    Loaded,
    /// No ConfigMap, no key or an empty file: the shipped defaults are in force.
    Defaults,
    /// The file is invalid (the message names the field); the last good catalogue stays in force.
    Invalid(String),
}

/// The catalogue in force and where it came from.
#[derive(Clone, Debug, Default)]
pub struct PriceBook {
    /// The prices in force.
    pub catalogue: Catalogue,
    /// `resourceVersion` of the ConfigMap last looked at (`None`: none seen, or it was absent).
    pub resource_version: Option<String>,
    /// Whether a ConfigMap (or its absence) has been looked at at all.
    pub seen: bool,
    /// Why the ConfigMap last looked at was refused (`None` when it was good).
    pub problem: Option<String>,
}

impl PriceBook {
    /// Takes the ConfigMap as read now (`None` = absent) under `key`.
    pub fn apply(&mut self, cm: Option<&ConfigMap>, key: &str) -> PriceUpdate {
        let version = cm.and_then(|c| c.metadata.resource_version.clone());
        if self.seen && version == self.resource_version {
            return PriceUpdate::Unchanged;
        }
        self.seen = true;
        self.resource_version = version;
        let text = cm
            .and_then(|c| c.data.as_ref())
            .and_then(|d| d.get(key))
            .filter(|t| has_content(t));
        let Some(text) = text else {
            self.catalogue = Catalogue::default();
            self.problem = None;
            return PriceUpdate::Defaults;
        };
        match Catalogue::with_overrides(text) {
            Ok(c) => {
                self.catalogue = c;
                self.problem = None;
                PriceUpdate::Loaded
            }
            Err(e) => {
                let message = format!("key {key}: {e}");
                self.problem = Some(message.clone());
                PriceUpdate::Invalid(message)
            }
        }
    }
}

/// Whether a YAML text has anything but blank lines and comments.
fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_cost::Pool;
    use std::collections::BTreeMap;

    fn cm(rv: &str, text: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(DEFAULT_NAME.into());
        c.metadata.resource_version = Some(rv.into());
        c.data = Some(BTreeMap::from([(
            DEFAULT_KEY.to_string(),
            text.to_string(),
        )]));
        c
    }

    fn h100(book: &PriceBook) -> u64 {
        book.catalogue
            .price("H100-80GB", Pool::OnDemand)
            .map(|p| p.micros_per_gpu_hour)
            .unwrap_or(0)
    }

    const TWO_DOLLARS: &str = "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: 2.00, source: contract, date: 2026-11-01}\n";

    #[test]
    fn configmap_prices_are_merged_over_the_defaults() {
        let mut book = PriceBook::default();
        let shipped = h100(&book);
        assert_eq!(
            book.apply(Some(&cm("1", TWO_DOLLARS)), DEFAULT_KEY),
            PriceUpdate::Loaded
        );
        assert_eq!(h100(&book), 2_000_000);
        assert_ne!(shipped, 2_000_000);
        // Entries the file does not name keep the shipped price.
        assert_eq!(
            book.catalogue.price("L4-24GB", Pool::OnDemand),
            Catalogue::default().price("L4-24GB", Pool::OnDemand)
        );
        // The same version again is not parsed again.
        assert_eq!(
            book.apply(Some(&cm("1", TWO_DOLLARS)), DEFAULT_KEY),
            PriceUpdate::Unchanged
        );
    }

    #[test]
    fn a_bad_configmap_keeps_the_last_good_catalogue() {
        let mut book = PriceBook::default();
        book.apply(Some(&cm("1", TWO_DOLLARS)), DEFAULT_KEY);
        let bad = "prices:\n  - {model: H100-80GB, pool: on-demand, per_gpu_hour: -3, source: x, date: 2026-11-01}\n";
        match book.apply(Some(&cm("2", bad)), DEFAULT_KEY) {
            PriceUpdate::Invalid(m) => assert!(m.contains("prices[0].per_gpu_hour"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(h100(&book), 2_000_000, "last good prices kept");
        assert!(book.problem.is_some());
        // Reported once per version.
        assert_eq!(
            book.apply(Some(&cm("2", bad)), DEFAULT_KEY),
            PriceUpdate::Unchanged
        );
        // Not YAML at all.
        assert!(matches!(
            book.apply(Some(&cm("3", "prices: [unclosed")), DEFAULT_KEY),
            PriceUpdate::Invalid(_)
        ));
        assert_eq!(h100(&book), 2_000_000);
        // Fixed: loaded, problem cleared.
        let fixed = TWO_DOLLARS.replace("2.00", "2.50");
        assert_eq!(
            book.apply(Some(&cm("4", &fixed)), DEFAULT_KEY),
            PriceUpdate::Loaded
        );
        assert_eq!(h100(&book), 2_500_000);
        assert!(book.problem.is_none());
    }

    #[test]
    fn absent_configmap_key_or_comments_only_means_defaults() {
        let mut book = PriceBook::default();
        book.apply(Some(&cm("1", TWO_DOLLARS)), DEFAULT_KEY);
        assert_eq!(book.apply(None, DEFAULT_KEY), PriceUpdate::Defaults);
        assert_eq!(book.catalogue, Catalogue::default());
        assert_eq!(book.apply(None, DEFAULT_KEY), PriceUpdate::Unchanged);
        let comments = "# - {model: H100-80GB, pool: on-demand, per_gpu_hour: 2.00}\n\n";
        assert_eq!(
            book.apply(Some(&cm("5", comments)), DEFAULT_KEY),
            PriceUpdate::Defaults
        );
        assert_eq!(
            book.apply(Some(&cm("6", TWO_DOLLARS)), "other.yaml"),
            PriceUpdate::Defaults
        );
    }
}
