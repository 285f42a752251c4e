//! `sluice new NAME --lang rust|python|js|c`: writes a plugin project that builds into a
//! working component with one command. Every project carries a copy of the contract
//! (`wit/`), so it builds outside this repository. The templates are the files in
//! `templates/`, with `{{name}}` (and `{{artifact}}`, cargo's file name) filled in. A C
//! project also gets the contract's C bindings, cJSON and the helpers from
//! `guest-tools/c`, written as they are.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The contract every project is built against.
const CONTRACT: &str = include_str!("../../../wit/integration.wit");

/// A language `sluice new` can scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
    C,
}

impl Language {
    /// (path in the project, template text).
    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Language::Rust => &[
                ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
                ("src/lib.rs", include_str!("templates/rust/lib.rs")),
                ("README.md", include_str!("templates/rust/README.md")),
                (".gitignore", include_str!("templates/rust/gitignore")),
            ],
            Language::Python => &[
                ("app.py", include_str!("templates/python/app.py")),
                ("requirements.txt", include_str!("templates/python/requirements.txt")),
                ("README.md", include_str!("templates/python/README.md")),
                (".gitignore", include_str!("templates/python/gitignore")),
            ],
            Language::Js => &[
                ("plugin.js", include_str!("templates/js/plugin.js")),
                ("package.json", include_str!("templates/js/package.json")),
                ("README.md", include_str!("templates/js/README.md")),
                (".gitignore", include_str!("templates/js/gitignore")),
            ],
            Language::C => &[
                ("plugin.c", include_str!("templates/c/plugin.c")),
                ("build.sh", include_str!("templates/c/build.sh")),
                ("package.json", include_str!("templates/c/package.json")),
                ("README.md", include_str!("templates/c/README.md")),
                (".gitignore", include_str!("templates/c/gitignore")),
            ],
        }
    }

    /// (path in the project, contents) of the files copied as they are: the C bindings
    /// (generated, see guest-tools/c/generate-bindings), cJSON and the helpers.
    fn verbatim_files(self) -> &'static [(&'static str, &'static [u8])] {
        match self {
            Language::C => &[
                (
                    "bindings/sluice.h",
                    include_bytes!("../../../guest-tools/c/bindings/sluice.h"),
                ),
                (
                    "bindings/sluice.c",
                    include_bytes!("../../../guest-tools/c/bindings/sluice.c"),
                ),
                (
                    "bindings/sluice_component_type.o",
                    include_bytes!("../../../guest-tools/c/bindings/sluice_component_type.o"),
                ),
                ("cjson/cJSON.h", include_bytes!("../../../guest-tools/c/cjson/cJSON.h")),
                ("cjson/cJSON.c", include_bytes!("../../../guest-tools/c/cjson/cJSON.c")),
                ("cjson/LICENSE", include_bytes!("../../../guest-tools/c/cjson/LICENSE")),
                (
                    "helpers/sluice_helpers.h",
                    include_bytes!("../../../guest-tools/c/helpers/sluice_helpers.h"),
                ),
                (
                    "helpers/sluice_helpers.c",
                    include_bytes!("../../../guest-tools/c/helpers/sluice_helpers.c"),
                ),
            ],
            Language::Rust | Language::Python | Language::Js => &[],
        }
    }

    /// The one command that builds the project, and the component it writes.
    pub fn build_command(self, name: &str) -> (String, String) {
        match self {
            Language::Rust => (
                "cargo build --release --target wasm32-wasip2".into(),
                format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_")),
            ),
            Language::Python => (
                format!("componentize-py -d wit -w integration componentize app -o {name}.wasm"),
                format!("{name}.wasm"),
            ),
            Language::Js => ("npm install && npm run build".into(), format!("{name}.wasm")),
            Language::C => ("./build.sh".into(), format!("{name}.wasm")),
        }
    }
}

/// A plugin name: it becomes the integration's name and the plugin file's name, so a
/// lower-case letter first, then lower-case letters, digits, `-` or `_`.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 64;
    if !valid {
        bail!(
            "{name:?} is not a valid plugin name: start with a lower-case letter, then use lower-case letters, digits, - or _ (at most 64)"
        );
    }
    Ok(())
}

/// Writes the project for `name` into `dir` (which must not exist or be empty) and
/// returns the files written.
pub fn scaffold(name: &str, language: Language, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!(
            "{} already exists and is not empty; choose another name or --dir",
            dir.display()
        );
    }
    let artifact = name.replace('-', "_");
    let mut written = Vec::new();
    let files = language
        .files()
        .iter()
        .map(|(path, template)| {
            (
                *path,
                template
                    .replace("{{name}}", name)
                    .replace("{{artifact}}", &artifact)
                    .into_bytes(),
            )
        })
        .chain(std::iter::once(("wit/integration.wit", CONTRACT.as_bytes().to_vec())))
        .chain(
            language
                .verbatim_files()
                .iter()
                .map(|(path, bytes)| (*path, bytes.to_vec())),
        );
    for (path, contents) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, contents).with_context(|| format!("cannot write {}", target.display()))?;
        if path.ends_with(".sh") {
            make_executable(&target)?;
        }
        written.push(target);
    }
    Ok(written)
}

/// Lets a build script run as `./build.sh`.
fn make_executable(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Runs `sluice new`: scaffolds and tells what to do next.
pub fn new_project(name: &str, language: Language, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    scaffold(name, language, &dir)?;
    let (build, artifact) = language.build_command(name);
    println!("created {} ({language:?} plugin {name}) in {}", name, dir.display());
    println!();
    println!("build it:");
    println!("  cd {}", dir.display());
    if language == Language::Python {
        println!("  python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && . .venv/bin/activate");
    }
    println!("  {build}");
    println!();
    println!("then drop {artifact} into the plugins folder of a running sluice as {name}.wasm");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("shop-orders_2").is_ok());
        for bad in ["", "2shop", "Shop", "shop orders", "shop/../x", &"a".repeat(65)] {
            let error = check_name(bad).unwrap_err().to_string();
            assert!(error.contains("not a valid plugin name"), "{error}");
        }
    }

    #[test]
    fn the_c_bindings_were_generated_from_this_contract() {
        use sha2::{Digest, Sha256};
        let contract = hex::encode(Sha256::digest(CONTRACT));
        let bindings_made_from = include_str!("../../../guest-tools/c/bindings/contract.sha256").trim();
        assert_eq!(
            contract, bindings_made_from,
            "wit/integration.wit changed since the C bindings in guest-tools/c/bindings were made: run guest-tools/c/generate-bindings"
        );
    }

    #[test]
    fn every_template_is_filled_in() {
        for language in [Language::Rust, Language::Python, Language::Js, Language::C] {
            let dir = std::env::temp_dir().join(format!("sluice-scaffold-{language:?}-{}", std::process::id()));
            let files = scaffold("my-plugin", language, &dir).unwrap();
            for file in &files {
                // The bindings' object file is not text, and has no placeholders.
                let Ok(text) = std::fs::read_to_string(file) else {
                    continue;
                };
                assert!(!text.contains("{{"), "{} has a placeholder left", file.display());
            }
            assert!(dir.join("wit/integration.wit").exists());
            assert!(
                scaffold("my-plugin", language, &dir).is_err(),
                "a second scaffold must not overwrite"
            );
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
