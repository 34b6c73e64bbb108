//! An error and its causes on one line, for logs (the command line prints errors the same way),
//! without the C++ backtraces libtorch appends to its messages.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources: `outer: cause: root cause`.
pub struct Chain<'a>(pub &'a dyn Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = without_backtrace(&self.0.to_string()).to_owned();
        write!(f, "{last}")?;
        let mut source = self.0.source();
        while let Some(e) = source {
            let text = without_backtrace(&e.to_string()).to_owned();
            // `model.weights a.safetensors` then `a.safetensors: tensor …` (or `a.safetensors`
            // alone): the file once.
            let named = last.rsplit(' ').next().unwrap_or_default();
            if !named.is_empty() && text == named {
                source = e.source();
                continue;
            }
            let shown = match text.strip_prefix(named).and_then(|t| t.strip_prefix(": ")) {
                Some(rest) if !named.is_empty() => rest,
                _ => &text,
            };
            write!(f, ": {shown}")?;
            last = text;
            source = e.source();
        }
        Ok(())
    }
}

/// A libtorch message without the C++ backtrace it ends in (`Exception raised from …`, then
/// `frame #0: …` lines): the part that says what went wrong.
pub fn without_backtrace(text: &str) -> &str {
    let cut = ["\nException raised from", "\nframe #"]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min();
    cut.map_or(text, |i| text[..i].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the site")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn prints_every_cause_once() {
        let e = Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"));
        assert_eq!(Chain(&e).to_string(), "reading the site: no such file");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("model.weights /m/a.safetensors")]
    struct Named(#[source] std::io::Error);

    #[test]
    fn a_cause_that_repeats_the_name_its_parent_ends_in_says_it_once() {
        let e = Named(std::io::Error::other("/m/a.safetensors: tensor `x` has NaN"));
        assert_eq!(
            Chain(&e).to_string(),
            "model.weights /m/a.safetensors: tensor `x` has NaN"
        );
    }

    #[test]
    fn libtorch_backtraces_are_cut() {
        let text = "PytorchStreamReader failed reading zip archive\nException raised from valid at x.cc:242 \
                    (most recent call first):\nframe #0: c10::Error::Error + 0x9\nframe #1: main";
        assert_eq!(
            without_backtrace(text),
            "PytorchStreamReader failed reading zip archive"
        );
        assert_eq!(without_backtrace("plain"), "plain");
    }
}
