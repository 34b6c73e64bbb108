//! A camera's `visible` and `thermal` sources: their layout in the file and their checks.

use super::{Input, Param, RtspTransport, RtspUrl, SourceSpec};
use crate::base::PixelFormat;
use crate::config::{ConfigError, Source, checks};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    kind: Spanned<SourceKind>,
    path: Option<Spanned<PathBuf>>,
    uri: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
    transport: Option<Spanned<RtspTransport>>,
    latency_ms: Option<Spanned<i64>>,
    device: Option<Spanned<PathBuf>>,
    pattern: Option<Spanned<String>>,
    frames: Option<Spanned<i64>>,
    template: Option<Spanned<PathBuf>>,
    params: Option<Spanned<BTreeMap<String, String>>>,
    secret_params: Option<Spanned<Vec<String>>>,
    width: Option<Spanned<i64>>,
    height: Option<Spanned<i64>>,
    fps: Option<Spanned<f64>>,
    format: Option<Spanned<PixelFormat>>,
    #[serde(rename = "loop")]
    looping: Option<Spanned<bool>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum SourceKind {
    File,
    Rtsp,
    V4l2,
    Test,
    Template,
}

pub(super) fn check_source(
    src: &Source<'_>,
    key: &str,
    raw: Spanned<RawSource>,
    default_format: PixelFormat,
) -> Result<SourceSpec, ConfigError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let kind = *raw.kind.get_ref();
    // Keys each kind accepts beyond the common ones; anything else set is an error.
    let allowed: &[&str] = match kind {
        SourceKind::File => &["path"],
        SourceKind::Rtsp => &["uri", "password_env", "transport", "latency_ms"],
        SourceKind::V4l2 => &["device"],
        SourceKind::Test => &["pattern", "frames"],
        SourceKind::Template => &["template", "params", "secret_params"],
    };
    let set: [(&str, Option<std::ops::Range<usize>>); 9] = [
        ("path", raw.path.as_ref().map(Spanned::span)),
        ("uri", raw.uri.as_ref().map(Spanned::span)),
        ("password_env", raw.password_env.as_ref().map(Spanned::span)),
        ("transport", raw.transport.as_ref().map(Spanned::span)),
        ("latency_ms", raw.latency_ms.as_ref().map(Spanned::span)),
        ("device", raw.device.as_ref().map(Spanned::span)),
        ("pattern", raw.pattern.as_ref().map(Spanned::span)),
        ("frames", raw.frames.as_ref().map(Spanned::span)),
        ("template", raw.template.as_ref().map(Spanned::span)),
    ];
    let params_span = raw.params.as_ref().map(Spanned::span);
    let secret_span = raw.secret_params.as_ref().map(Spanned::span);
    for (name, s) in set
        .into_iter()
        .chain([("params", params_span), ("secret_params", secret_span)])
    {
        if let Some(s) = s
            && !allowed.contains(&name)
        {
            return Err(src.error(
                &format!("{key}.{name}"),
                s,
                format!(
                    "`{name}` does not apply to a `{kind:?}` source; it takes {}",
                    allowed.join(", ")
                )
                .to_lowercase(),
            ));
        }
    }
    let missing = |name: &str| {
        src.error(
            &format!("{key}.{name}"),
            span.clone(),
            format!("a `{}` source needs `{name}`", format!("{kind:?}").to_lowercase()),
        )
    };
    let input = match kind {
        SourceKind::File => Input::File {
            path: src.resolve(raw.path.as_ref().ok_or_else(|| missing("path"))?.get_ref()),
        },
        SourceKind::Rtsp => {
            let uri = raw.uri.as_ref().ok_or_else(|| missing("uri"))?;
            if !uri.get_ref().starts_with("rtsp://") && !uri.get_ref().starts_with("rtsps://") {
                return Err(src.error(
                    &format!("{key}.uri"),
                    uri.span(),
                    format!(
                        "expected an rtsp:// or rtsps:// URL, found {:?}",
                        crate::config::url::redact(uri.get_ref())
                    ),
                ));
            }
            if let Some(env) = &raw.password_env
                && crate::config::url::split(uri.get_ref())
                    .user
                    .is_none_or(|u| u.is_empty())
            {
                return Err(src.error(
                    &format!("{key}.password_env"),
                    env.span(),
                    format!(
                        "set, but {key}.uri names no user to go with the password (rtsp://user@host/…): {:?}",
                        crate::config::url::redact(uri.get_ref())
                    ),
                ));
            }
            Input::Rtsp {
                url: RtspUrl {
                    url: uri.get_ref().clone(),
                    password_env: raw.password_env.as_ref().map(|p| p.get_ref().clone()),
                },
                transport: raw.transport.as_ref().map_or(RtspTransport::Tcp, |t| *t.get_ref()),
                latency_ms: checks::int(src, &format!("{key}.latency_ms"), &raw.latency_ms, 200, 0, 60_000)? as u32,
            }
        }
        SourceKind::V4l2 => Input::V4l2 {
            device: raw.device.as_ref().ok_or_else(|| missing("device"))?.get_ref().clone(),
        },
        SourceKind::Test => Input::Test {
            pattern: raw
                .pattern
                .as_ref()
                .map_or_else(|| "ball".to_owned(), |p| p.get_ref().clone()),
            frames: match &raw.frames {
                None => None,
                Some(_) => Some(checks::int(src, &format!("{key}.frames"), &raw.frames, 0, 1, i64::MAX)? as u64),
            },
        },
        SourceKind::Template => Input::Template {
            template: src.resolve(raw.template.as_ref().ok_or_else(|| missing("template"))?.get_ref()),
            params: template_params(src, key, raw.params, raw.secret_params)?,
        },
    };
    let size = match (&raw.width, &raw.height) {
        (None, None) => None,
        (Some(_), Some(_)) => Some((
            checks::int(src, &format!("{key}.width"), &raw.width, 0, 16, 16_384)? as u32,
            checks::int(src, &format!("{key}.height"), &raw.height, 0, 16, 16_384)? as u32,
        )),
        (Some(w), None) => {
            return Err(src.error(
                &format!("{key}.height"),
                w.span(),
                "`width` is set, so `height` is needed too",
            ));
        }
        (None, Some(h)) => {
            return Err(src.error(
                &format!("{key}.width"),
                h.span(),
                "`height` is set, so `width` is needed too",
            ));
        }
    };
    let fps = match &raw.fps {
        None => None,
        Some(_) => Some(checks::float(src, &format!("{key}.fps"), &raw.fps, 0.0, 0.01, 1000.0)?),
    };
    let looping = raw.looping.as_ref().is_some_and(|l| *l.get_ref());
    if looping
        && kind != SourceKind::File
        && let Some(l) = &raw.looping
    {
        return Err(src.error(
            &format!("{key}.loop"),
            l.span(),
            "`loop` applies only to `file` sources",
        ));
    }
    let format = raw.format.as_ref().map_or(default_format, |f| *f.get_ref());
    if default_format == PixelFormat::Rgb
        && format != PixelFormat::Rgb
        && let Some(f) = &raw.format
    {
        return Err(src.error(
            &format!("{key}.format"),
            f.span(),
            "visible sources deliver `rgb` frames",
        ));
    }
    if default_format != PixelFormat::Rgb
        && format == PixelFormat::Rgb
        && let Some(f) = &raw.format
    {
        return Err(src.error(
            &format!("{key}.format"),
            f.span(),
            "thermal sources deliver `gray8` or `gray16` frames",
        ));
    }
    Ok(SourceSpec {
        input,
        size,
        fps,
        format,
        looping,
    })
}

/// A template's `params`, those named in `secret_params` marked secret (each must be a parameter).
fn template_params(
    src: &Source<'_>,
    key: &str,
    params: Option<Spanned<BTreeMap<String, String>>>,
    secret: Option<Spanned<Vec<String>>>,
) -> Result<BTreeMap<String, Param>, ConfigError> {
    let params = params.map(Spanned::into_inner).unwrap_or_default();
    let secret_names = match secret {
        Some(names) => {
            let span = names.span();
            let names = names.into_inner();
            if let Some(unknown) = names.iter().find(|n| !params.contains_key(*n)) {
                return Err(src.error(
                    &format!("{key}.secret_params"),
                    span,
                    format!("{unknown:?} is not one of this source's params"),
                ));
            }
            names
        }
        None => Vec::new(),
    };
    Ok(params
        .into_iter()
        .map(|(name, value)| {
            let secret = secret_names.contains(&name);
            (name, Param::new(value, secret))
        })
        .collect())
}
