//! Pipeline templates (`pipelines/*.pipeline`): `gst-launch` syntax with `${name}` placeholders,
//! rendered into a description that ends in an appsink named `sink`.
//!
//! Lines starting with `#` are comments. `${output}` expands to the tail every source shares:
//! conversion to the wanted pixel format, scaling and frame-rate control inside GStreamer, then
//! the appsink. The built-in templates (file, rtsp, v4l2, test) are compiled into the binary.

use reid_core::config::site::{Input, RtspTransport, SourceSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Built-in template for files.
pub const FILE: &str = include_str!("../../../../pipelines/file.pipeline");
/// Built-in template for RTSP cameras.
pub const RTSP: &str = include_str!("../../../../pipelines/rtsp.pipeline");
/// Built-in template for V4L2 devices.
pub const V4L2: &str = include_str!("../../../../pipelines/v4l2.pipeline");
/// Built-in template for test patterns.
pub const TEST: &str = include_str!("../../../../pipelines/test.pipeline");

/// Errors rendering a template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read pipeline template {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("pipeline template {template}: placeholder ${{{name}}} has no value (set it in `params`)")]
    Missing { template: String, name: String },
    #[error("pipeline template {template}: unclosed placeholder starting at byte {at}")]
    Unclosed { template: String, at: usize },
    #[error("pipeline template {template}: no appsink named `sink` and no ${{output}}; a template must end in one")]
    NoSink { template: String },
}

/// A rendered pipeline description plus what to set on it that must not appear in text.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    /// `gst-launch` description for GStreamer: holds the values of secret template parameters,
    /// so it is never printed (print [`Rendered::shown`]).
    pub description: String,
    /// The description with every secret value redacted: safe to log and to put in errors.
    pub shown: String,
    /// RTSP user id and password to set on the `rtspsrc` named `src`, if any.
    pub rtsp_credentials: Option<(String, String)>,
    /// The secret values in `description`, for scrubbing GStreamer's messages.
    secrets: Vec<String>,
}

impl Rendered {
    /// `text` (a GStreamer message about this pipeline) with every secret value replaced by
    /// `***`, as written and percent-decoded (an element may print a URL's password decoded).
    pub fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .flat_map(|s| [s.clone(), percent_decoded(s)])
            .filter(|s| !s.is_empty())
            .fold(text.to_owned(), |t, secret| t.replace(secret.as_str(), "***"))
    }
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("description", &self.shown)
            .field(
                "rtsp_credentials",
                &self.rtsp_credentials.as_ref().map(|(user, _)| (user, "***")),
            )
            .finish_non_exhaustive()
    }
}

/// Renders the pipeline description for one source.
pub fn render(spec: &SourceSpec) -> Result<Rendered, TemplateError> {
    let mut vars = BTreeMap::new();
    vars.insert("output".to_owned(), output_tail(spec));
    // Values as printed where they differ from the real ones (secret template parameters).
    let mut shown_vars = BTreeMap::new();
    let mut secrets = Vec::new();
    let mut rtsp_credentials = None;
    let (name, text) = match &spec.input {
        Input::File { path } => {
            vars.insert("location".to_owned(), quote(&path.to_string_lossy()));
            ("file".to_owned(), FILE.to_owned())
        }
        Input::Rtsp {
            url,
            transport,
            latency_ms,
        } => {
            let reid_core::config::url::Credentials { clean, user, password } =
                reid_core::config::url::split(url.expose());
            let password = match (&url.password_env, password) {
                (Some(var), _) => std::env::var(var).ok(),
                (None, p) => p,
            };
            vars.insert("location".to_owned(), quote(&clean));
            let protocols = match transport {
                RtspTransport::Tcp => "tcp",
                RtspTransport::Udp => "udp",
            };
            vars.insert("protocols".to_owned(), protocols.to_owned());
            vars.insert("latency".to_owned(), latency_ms.to_string());
            if let Some(user) = user {
                rtsp_credentials = Some((user, password.unwrap_or_default()));
            }
            ("rtsp".to_owned(), RTSP.to_owned())
        }
        Input::V4l2 { device } => {
            vars.insert("device".to_owned(), quote(&device.to_string_lossy()));
            ("v4l2".to_owned(), V4L2.to_owned())
        }
        Input::Test { pattern, frames } => {
            vars.insert("pattern".to_owned(), quote(pattern));
            vars.insert("frames".to_owned(), frames.map_or(-1, |n| n as i64).to_string());
            ("test".to_owned(), TEST.to_owned())
        }
        Input::Template { template, params } => {
            let text = read_template(template)?;
            for (k, v) in params {
                vars.insert(k.clone(), quote(v.expose()));
                if let Some(secret) = v.secret() {
                    shown_vars.insert(k.clone(), quote(&v.shown()));
                    secrets.push(secret);
                }
            }
            (template.display().to_string(), text)
        }
    };
    let description = substitute(&name, &text, &vars)?;
    if !description.contains("appsink") || !description.contains("name=sink") {
        return Err(TemplateError::NoSink { template: name });
    }
    for (k, v) in vars {
        shown_vars.entry(k).or_insert(v);
    }
    let shown = substitute(&name, &text, &shown_vars)?;
    if let Some((_, password)) = &rtsp_credentials
        && !password.is_empty()
    {
        secrets.push(password.clone());
    }
    Ok(Rendered {
        description,
        shown,
        rtsp_credentials,
        secrets,
    })
}

/// `%XX` escapes decoded (as URLs carry them); anything else kept.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a template file.
pub fn read_template(path: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The shared tail: convert, scale, rate-limit, fix caps, appsink.
fn output_tail(spec: &SourceSpec) -> String {
    let mut caps = format!("video/x-raw,format={}", spec.format.gst_name());
    let mut chain = String::from("videoconvert ! videoscale");
    if let Some((w, h)) = spec.size {
        caps.push_str(&format!(",width={w},height={h}"));
    }
    if let Some(fps) = spec.fps {
        let (n, d) = fraction(fps);
        chain.push_str(" ! videorate drop-only=true");
        caps.push_str(&format!(",framerate={n}/{d}"));
    }
    format!("{chain} ! {caps} ! appsink name=sink")
}

/// A frame rate as a fraction with denominator 1000 reduced (e.g. 12.5 → 25/2).
fn fraction(fps: f64) -> (u64, u64) {
    let mut n = (fps * 1000.0).round() as u64;
    let mut d = 1000;
    let g = gcd(n, d);
    n /= g;
    d /= g;
    (n.max(1), d)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

/// Quotes a value for gst-launch syntax.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Replaces `${name}` placeholders and drops comment lines.
fn substitute(name: &str, text: &str, vars: &BTreeMap<String, String>) -> Result<String, TemplateError> {
    let body: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    let body = body.join(" ");
    let mut out = String::with_capacity(body.len());
    let mut rest = body.as_str();
    let mut offset = 0;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(TemplateError::Unclosed {
            template: name.to_owned(),
            at: offset + start,
        })?;
        let key = &after[..end];
        let value = vars.get(key).ok_or_else(|| TemplateError::Missing {
            template: name.to_owned(),
            name: key.to_owned(),
        })?;
        out.push_str(value);
        offset += start + 2 + end + 1;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// GStreamer element names a description uses, in order, without duplicates.
pub fn elements(description: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for segment in split_links(description) {
        let Some(first) = segment.split_whitespace().next() else {
            continue;
        };
        // Caps filters (`video/x-raw,…`) and references to named elements (`t.`) are not elements.
        if first.contains('/') || first.ends_with('.') || first.contains('=') {
            continue;
        }
        if !out.iter().any(|e| e == first) {
            out.push(first.to_owned());
        }
    }
    out
}

/// Splits on `!` outside double quotes.
fn split_links(description: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in description.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '!' if !quoted => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use reid_core::base::PixelFormat;

    fn spec(input: Input) -> SourceSpec {
        SourceSpec {
            input,
            size: Some((320, 240)),
            fps: Some(12.5),
            format: PixelFormat::Gray8,
            looping: false,
        }
    }

    #[test]
    fn renders_a_file_source_with_the_output_tail() {
        let r = render(&spec(Input::File {
            path: PathBuf::from("/v/a \"b\".avi"),
        }))
        .expect("renders");
        assert_eq!(
            r.description,
            "filesrc location=\"/v/a \\\"b\\\".avi\" ! decodebin ! videoconvert ! videoscale ! videorate drop-only=true ! \
             video/x-raw,format=GRAY8,width=320,height=240,framerate=25/2 ! appsink name=sink"
        );
        assert_eq!(
            elements(&r.description),
            [
                "filesrc",
                "decodebin",
                "videoconvert",
                "videoscale",
                "videorate",
                "appsink"
            ]
        );
    }

    #[test]
    fn missing_placeholder_is_named() {
        let vars = BTreeMap::new();
        let e = substitute("t", "filesrc location=${where} ! appsink name=sink", &vars).unwrap_err();
        assert!(e.to_string().contains("${where}"), "{e}");
        assert!(matches!(
            substitute("t", "a ${b", &vars),
            Err(TemplateError::Unclosed { at: 2, .. })
        ));
    }
}
