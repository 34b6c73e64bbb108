//! The compute device a setting asks for, and what this machine makes of it.

/// Compute device kind of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// CUDA when available, CPU otherwise.
    Auto,
    Cpu,
    Cuda,
}

/// A device choice with an optional CUDA ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub kind: DeviceKind,
    pub cuda_index: usize,
}

impl Device {
    /// CUDA when present, the CPU otherwise.
    pub const AUTO: Device = Device {
        kind: DeviceKind::Auto,
        cuda_index: 0,
    };

    /// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Option<Device> {
        let kind = |kind| Some(Device { kind, cuda_index: 0 });
        match s {
            "auto" => kind(DeviceKind::Auto),
            "cpu" => kind(DeviceKind::Cpu),
            "cuda" => kind(DeviceKind::Cuda),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(|cuda_index| Device {
                    kind: DeviceKind::Cuda,
                    cuda_index,
                }),
        }
    }

    /// The libtorch device for the setting `key`: `Auto` picks CUDA when present; CUDA asked
    /// for where libtorch sees no such device is an error (before anything is allocated on it).
    pub fn resolve(self, key: &str) -> Result<tch::Device, DeviceError> {
        match self.kind {
            DeviceKind::Cpu => Ok(tch::Device::Cpu),
            DeviceKind::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceKind::Cuda => {
                let present = tch::Cuda::device_count().max(0) as usize;
                if self.cuda_index < present {
                    Ok(tch::Device::Cuda(self.cuda_index))
                } else {
                    Err(DeviceError {
                        key: key.to_owned(),
                        index: self.cuda_index,
                        present,
                    })
                }
            }
        }
    }
}

/// A device setting this machine cannot honour.
#[derive(Debug, thiserror::Error)]
#[error("{key} = cuda:{index}: {}; use \"auto\" to run on the CPU when there is no GPU", match present {
    0 => "libtorch sees no CUDA device on this machine".to_owned(),
    n => format!("this machine has {n} CUDA device(s), numbered from 0"),
})]
pub struct DeviceError {
    /// The setting: a configuration key or a command-line option.
    pub key: String,
    pub index: usize,
    /// CUDA devices libtorch sees.
    pub present: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!(
            Device::parse("cuda:1"),
            Some(Device {
                kind: DeviceKind::Cuda,
                cuda_index: 1
            })
        );
        assert_eq!(Device::parse("cpu").map(|d| d.kind), Some(DeviceKind::Cpu));
        assert_eq!(Device::parse("gpu"), None);
        assert_eq!(Device::parse("cuda:x"), None);
    }
}
