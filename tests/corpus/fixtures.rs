//! Good inputs the malformed cases are made from: a generated SYSU-MM01 set, the setup's
//! MobileNetV2 weights, a site and a training file that `check` accepts.

use crate::{arg, common, write};
use std::path::{Path, PathBuf};

/// The good inputs, in one temporary folder.
pub struct Fixtures {
    /// The folder every case writes under (one sub-folder per case).
    pub dir: PathBuf,
    /// A generated SYSU-MM01 set of 6 identities (4 for training).
    pub sysu: PathBuf,
    /// The ImageNet MobileNetV2 weights `scripts/setup.sh` converts.
    pub weights: PathBuf,
    /// A site file with two test sources, the HOG detector and the weights above.
    pub site: PathBuf,
    /// A training file for a tiny ResNet on `sysu`.
    pub train: PathBuf,
}

impl Fixtures {
    /// Writes the fixtures under `dir`.
    pub fn make(dir: &Path) -> Self {
        let sysu = dir.join("sysu");
        common::ok(
            common::bin()
                .args(["synth", "--format", "sysu", "--identities", "6", "--out", &arg(&sysu)])
                .output()
                .expect("synth"),
        );
        let weights = common::repo("models/weights/mobilenetv2_imagenet.safetensors");
        let site = write(&dir.join("good/site.toml"), site_text(dir, &weights, ""));
        let train = write(
            &dir.join("good/train.toml"),
            train_text(&dir.join("good/run"), &sysu, ""),
        );
        Fixtures {
            dir: dir.to_path_buf(),
            sysu,
            weights,
            site,
            train,
        }
    }

    /// A fresh folder for the case `name`.
    pub fn case_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.join("cases").join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }
}

/// A site file that runs: two 5-frame test sources, HOG, the given weights; `extra` appended.
pub fn site_text(dir: &Path, weights: &Path, extra: &str) -> String {
    format!(
        "[runtime]\ndevice = \"cpu\"\n[[cameras]]\nname = \"a\"\n[cameras.visible]\nkind = \"test\"\nframes = 5\n\
         [cameras.thermal]\nkind = \"test\"\nframes = 5\n[detector]\nkind = \"hog\"\n[model]\nweights = \"{}\"\n\
         [index]\nsnapshot_dir = \"{}\"\n{extra}",
        weights.display(),
        dir.join("index").display()
    )
}

/// A training file for a tiny ResNet on `data` writing to `out`; `extra` appended.
pub fn train_text(out: &Path, data: &Path, extra: &str) -> String {
    format!(
        "output_dir = \"{}\"\ndevice = \"cpu\"\n[dataset]\nkind = \"sysu\"\nroot = \"{}\"\n\
         [model]\nbackbone = \"tinyresnet\"\ninput_size = [64, 32]\n\
         [schedule]\nidentities_per_batch = 3\nimages_per_identity = 2\n{extra}",
        out.display(),
        data.display()
    )
}
