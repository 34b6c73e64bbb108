//! What the benches share.

use std::process::Command;

/// The Python interpreter with the reference torch: `REID_TORCH_PYTHON`, or the one
/// `scripts/setup.sh` installs.
pub fn python() -> Command {
    Command::new(std::env::var_os("REID_TORCH_PYTHON").unwrap_or_else(|| "/opt/reid-torch/bin/python".into()))
}
