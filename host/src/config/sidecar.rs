//! The sidecar file `<name>.toml` beside each plugin: the installation's configuration,
//! its limits and the outside hosts it may call.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

/// The largest linear memory any plugin may be given; the pooling allocator reserves
/// address space for this much per slot.
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

/// Limits applied to every call into an installation's plugin.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", try_from = "LimitsFile")]
pub struct Limits {
    /// Largest request body accepted; bigger requests get 413 before the plugin runs.
    /// Unless set, a thirty-second of the memory limit ([`DEFAULT_BODY_SHARE`]), at most
    /// the Botpress Webhook integration's 100 MB; never more than the memory limit.
    pub max_body_bytes: u64,
    /// Largest linear memory the plugin may grow to.
    pub max_memory_bytes: u64,
    /// Wall-clock deadline for one call, host calls and outbound HTTP included.
    pub timeout_ms: u64,
}

/// The default body limit is the memory limit divided by this. A plugin holds its body,
/// and what it parses from it, in that memory, besides its own runtime: the example
/// plugins, the Python and JavaScript ones with their interpreters, each handle a body of
/// many small JSON records at this share of the default memory (2 MiB of 64 MiB) with
/// room to spare, and the JavaScript one, which parses the body into objects, fails
/// only past 3 MiB.
pub const DEFAULT_BODY_SHARE: u64 = 32;

/// The largest default body limit: the Botpress Webhook integration's.
const MAX_DEFAULT_BODY_BYTES: u64 = 100 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits::try_from(LimitsFile::default()).expect("the default limits are consistent")
    }
}

/// `[limits]` as written in a sidecar.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct LimitsFile {
    max_body_bytes: Option<u64>,
    max_memory_bytes: Option<u64>,
    timeout_ms: Option<u64>,
}

impl TryFrom<LimitsFile> for Limits {
    type Error = String;

    fn try_from(file: LimitsFile) -> Result<Limits, String> {
        let max_memory_bytes = file.max_memory_bytes.unwrap_or(64 << 20);
        if max_memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "limits.max-memory-bytes is {max_memory_bytes} but at most {MAX_MEMORY_BYTES} (4 GiB) is allowed"
            ));
        }
        let timeout_ms = file.timeout_ms.unwrap_or(10_000);
        if timeout_ms == 0 {
            return Err("limits.timeout-ms must be above 0".into());
        }
        let max_body_bytes = match file.max_body_bytes {
            Some(bytes) if bytes > max_memory_bytes => {
                // Refusing the sidecar would take a working installation down; a body
                // that cannot fit is refused instead, with 413 rather than a crash.
                tracing::warn!(
                    "limits.max-body-bytes ({bytes}) is more than limits.max-memory-bytes ({max_memory_bytes}); \
                     a plugin holds the whole body in its memory, so bodies over {max_memory_bytes} bytes get 413"
                );
                max_memory_bytes
            }
            Some(bytes) => bytes,
            None => (max_memory_bytes / DEFAULT_BODY_SHARE).min(MAX_DEFAULT_BODY_BYTES),
        };
        Ok(Limits {
            max_body_bytes,
            max_memory_bytes,
            timeout_ms,
        })
    }
}

/// The sidecar file `<name>.toml` beside `<name>.wasm`: the installation's configuration
/// (checked against the plugin's configuration schema), its limits and the outside hosts
/// it may call.
///
/// ```toml
/// allowed-hosts = ["https://slack.com", "http://127.0.0.1:*"]
/// trusted-certificates = """
/// -----BEGIN CERTIFICATE-----
/// ...
/// -----END CERTIFICATE-----
/// """
///
/// [configuration]
/// secret = "s3cret"
///
/// [limits]
/// max-body-bytes = 1048576
/// max-memory-bytes = 67108864
/// timeout-ms = 10000
/// ```
///
/// and, at the top, `dedupe-retention-hours = 72`: how long a dedupe key a plugin gives
/// (the platform's delivery id) keeps a retried delivery from being recorded again.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Sidecar {
    /// The installation's configuration, handed to the plugin as JSON.
    #[serde(default)]
    pub configuration: toml::Table,
    /// Per-call limits.
    #[serde(default)]
    pub limits: Limits,
    /// Origins the plugin may call through `wasi:http` (`scheme://host[:port]`, with `*`
    /// as a wildcard for the port or a leading `*.` for subdomains).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// CA certificates (PEM) the plugin's https calls trust beside the public web's roots:
    /// a private CA's, for services of one's own.
    #[serde(default)]
    pub trusted_certificates: Option<String>,
    /// How long a dedupe key holds, in hours: platforms retry for hours (Shopify for 4,
    /// Stripe for 3 days), so the default is 72.
    #[serde(default = "default_dedupe_retention_hours")]
    pub dedupe_retention_hours: u32,
}

fn default_dedupe_retention_hours() -> u32 {
    72
}

impl Default for Sidecar {
    fn default() -> Self {
        Sidecar {
            configuration: toml::Table::new(),
            limits: Limits::default(),
            allowed_hosts: Vec::new(),
            trusted_certificates: None,
            dedupe_retention_hours: default_dedupe_retention_hours(),
        }
    }
}

impl Sidecar {
    /// The sidecar path for a plugin file: same folder and name, `.toml` extension.
    pub fn path_for(plugin_file: &Path) -> PathBuf {
        plugin_file.with_extension("toml")
    }

    /// Reads and parses the sidecar of `plugin_file`, returning its text too; no sidecar
    /// means defaults (and empty text).
    pub fn load_for(plugin_file: &Path) -> anyhow::Result<(Sidecar, String)> {
        let path = Self::path_for(plugin_file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
        };
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        // Warnings about the file's values name it.
        let sidecar = tracing::warn_span!("sidecar", file = %name)
            .in_scope(|| Self::parse(&text))
            .with_context(|| format!("{name} is not a valid sidecar file"))?;
        Ok((sidecar, text))
    }

    /// Parses sidecar text and checks its limits.
    pub fn parse(text: &str) -> anyhow::Result<Sidecar> {
        let sidecar: Sidecar = toml::from_str(text)?;
        for host in &sidecar.allowed_hosts {
            HostPattern::parse(host).with_context(|| format!("allowed-hosts entry {host:?} is not valid"))?;
        }
        sidecar.trusted_certificates()?;
        Ok(sidecar)
    }

    /// The certificates of `trusted-certificates`, each checked to be a usable CA.
    pub fn trusted_certificates(&self) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let Some(text) = &self.trusted_certificates else {
            return Ok(Vec::new());
        };
        let certificates = CertificateDer::pem_slice_iter(text.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("trusted-certificates is not PEM text: {e}"))?;
        anyhow::ensure!(
            !certificates.is_empty(),
            "trusted-certificates holds no certificate (PEM blocks from -----BEGIN CERTIFICATE-----)"
        );
        let mut roots = rustls::RootCertStore::empty();
        for (index, certificate) in certificates.iter().enumerate() {
            roots
                .add(certificate.clone())
                .with_context(|| format!("certificate {} of trusted-certificates cannot be trusted", index + 1))?;
        }
        Ok(certificates)
    }

    /// How long a dedupe key holds.
    pub fn dedupe_retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.dedupe_retention_hours) * 3600)
    }

    /// The configuration as JSON, the form plugins and schemas see.
    pub fn configuration_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.configuration).unwrap_or_default()
    }
}

/// One `allowed-hosts` entry: `scheme://host[:port]`. The port may be `*` (any port);
/// the host may start with `*.` (any subdomain). Without a port, the scheme's default
/// port is meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    /// Parses an `allowed-hosts` entry.
    pub fn parse(text: &str) -> anyhow::Result<HostPattern> {
        let (scheme, rest) = text
            .split_once("://")
            .context("it needs a scheme, for example https://api.example.com")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            bail!("scheme {scheme} is not http or https");
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            bail!("only scheme, host and port are allowed, not a path");
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, None),
            Some((host, port)) => (
                host,
                Some(
                    port.parse::<u16>()
                        .with_context(|| format!("port {port} is not a number or *"))?,
                ),
            ),
            None => (rest, Some(Self::default_port(&scheme))),
        };
        if host.is_empty() {
            bail!("the host is empty");
        }
        Ok(HostPattern {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The port a URL of `scheme` means when it names none.
    pub fn default_port(scheme: &str) -> u16 {
        if scheme == "https" { 443 } else { 80 }
    }

    /// Whether a request to `scheme://host:port` matches this entry.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_matches = match self.host.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == self.host,
        };
        self.scheme == scheme && host_matches && self.port.is_none_or(|p| p == port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sidecar_means_defaults() {
        let sidecar = Sidecar::parse("").unwrap();
        assert_eq!(sidecar.limits, Limits::default());
        assert_eq!(sidecar.limits.max_memory_bytes, 64 * 1024 * 1024);
        assert_eq!(sidecar.limits.max_body_bytes, 2 * 1024 * 1024);
        assert_eq!(sidecar.configuration_json(), serde_json::json!({}));
    }

    #[test]
    fn sidecar_reads_configuration_limits_and_hosts() {
        let sidecar = Sidecar::parse(
            r#"
            allowed-hosts = ["https://slack.com"]
            [configuration]
            secret = "s"
            allowedOrigins = ["https://a.example"]
            [limits]
            max-body-bytes = 10
            "#,
        )
        .unwrap();
        assert_eq!(sidecar.limits.max_body_bytes, 10);
        assert_eq!(sidecar.limits.timeout_ms, 10_000);
        assert_eq!(sidecar.allowed_hosts, ["https://slack.com"]);
        assert_eq!(
            sidecar.configuration_json(),
            serde_json::json!({"secret": "s", "allowedOrigins": ["https://a.example"]})
        );
    }

    #[test]
    fn sidecar_typos_are_named() {
        let error = Sidecar::parse("[limits]\nmax-body = 3\n").unwrap_err();
        assert!(format!("{error:#}").contains("max-body"), "{error:#}");
    }

    #[test]
    fn the_body_limit_follows_the_memory_limit_and_never_exceeds_it() {
        let limits = |text: &str| Sidecar::parse(text).map(|s| s.limits);
        let bigger = limits("[limits]\nmax-memory-bytes = 268435456\n").unwrap();
        assert_eq!(bigger.max_body_bytes, 8 << 20);
        let huge = limits("[limits]\nmax-memory-bytes = 4294967296\n").unwrap();
        assert_eq!(huge.max_body_bytes, 100 << 20);
        // Set, it is kept, up to the memory limit.
        let set = limits("[limits]\nmax-body-bytes = 67108864\n").unwrap();
        assert_eq!(set.max_body_bytes, 64 << 20);
        // More than fits in memory is cut to the memory limit.
        let too_much = limits("[limits]\nmax-body-bytes = 104857600\n").unwrap();
        assert_eq!(too_much.max_body_bytes, 64 << 20);
    }

    #[test]
    fn memory_limit_is_capped() {
        let error = Sidecar::parse("[limits]\nmax-memory-bytes = 99999999999\n").unwrap_err();
        assert!(format!("{error:#}").contains("max-memory-bytes"), "{error:#}");
    }

    #[test]
    fn bad_entries_say_why() {
        assert!(
            HostPattern::parse("slack.com")
                .unwrap_err()
                .to_string()
                .contains("scheme")
        );
        assert!(HostPattern::parse("ftp://x").unwrap_err().to_string().contains("ftp"));
        assert!(
            HostPattern::parse("https://x/path")
                .unwrap_err()
                .to_string()
                .contains("path")
        );
    }
}
