//! The backbone networks an embedder can be.

/// Backbone network of the embedder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backbone {
    Resnet50,
    Mobilenetv2,
    /// Narrow, shallow ResNet for tests.
    Tinyresnet,
}
