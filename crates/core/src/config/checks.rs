//! Range checks shared by the site and training files, each naming the key and its location.

use super::{ConfigError, Source};
use toml::Spanned;

/// An integer in `[min, max]`.
pub(crate) fn int(
    src: &Source<'_>,
    key: &str,
    v: &Option<Spanned<i64>>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let x = *v.get_ref();
    if x < min || x > max {
        let range = if max == i64::MAX {
            format!("≥ {min}")
        } else {
            format!("in [{min}, {max}]")
        };
        return Err(src.error(key, v.span(), format!("expected an integer {range}, found {x}")));
    }
    Ok(x)
}

/// A finite number in `[min, max]`.
pub(crate) fn float(
    src: &Source<'_>,
    key: &str,
    v: &Option<Spanned<f64>>,
    default: f64,
    min: f64,
    max: f64,
) -> Result<f64, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    let x = *v.get_ref();
    if !x.is_finite() || x < min || x > max {
        let range = if max == f64::INFINITY {
            format!("≥ {min}")
        } else {
            format!("in [{min}, {max}]")
        };
        return Err(src.error(key, v.span(), format!("expected a number {range}, found {x}")));
    }
    Ok(x)
}

/// A strictly positive, finite number.
pub(crate) fn positive(
    src: &Source<'_>,
    key: &str,
    v: &Option<Spanned<f64>>,
    default: f64,
) -> Result<f64, ConfigError> {
    if let Some(s) = v
        && (*s.get_ref() <= 0.0 || !s.get_ref().is_finite())
    {
        return Err(src.error(key, s.span(), format!("expected a number > 0, found {}", s.get_ref())));
    }
    float(src, key, v, default, 0.0, f64::INFINITY)
}

/// Exactly two values, `[a, b]`. Serde's fixed-size arrays read the first two elements of a
/// longer TOML array and ignore the rest, so `[64, 32, 3]` would pass as `[64, 32]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair<T>(pub [T; 2]);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Pair<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let values = Vec::<T>::deserialize(d)?;
        let found = values.len();
        <[T; 2]>::try_from(values)
            .map(Pair)
            .map_err(|_| serde::de::Error::invalid_length(found, &"exactly 2 values"))
    }
}
