//! Does a component fit the contract this host speaks (`wit/integration.wit`)?
//!
//! The check walks the component's imports and exports by name first, so that a plugin
//! built against another version of the contract, or one that lacks a function, is told
//! exactly what is missing or different; then wasmtime's own type check (linking the
//! imports, typing the exports) catches a function whose signature differs.

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::bindings::IntegrationPre;
use super::engine::Engine;
use super::host::HostState;

/// The contract's package and version.
pub const PACKAGE: &str = "sluice:integration";
pub const VERSION: &str = "0.1.0";

/// The interface a plugin exports, and its functions.
const EXPORTED: (&str, &[&str]) = (
    "plugin",
    &[
        "definition",
        "register",
        "unregister",
        "handler",
        "call-action",
        "handle-message",
    ],
);

/// The interfaces a plugin may import, and their functions.
const IMPORTABLE: &[(&str, &[&str])] = &[
    ("types", &[]),
    (
        "client",
        &[
            "create-event",
            "get-state",
            "set-state",
            "delete-state",
            "get-or-create-conversation",
            "get-conversation",
            "get-or-create-user",
            "get-user",
            "create-message",
            "get-message",
            "create-event-once",
            "create-message-once",
            "retry-after",
        ],
    ),
    ("logger", &["log"]),
];

/// `sluice:integration/<interface>@<version>` of this contract.
pub fn interface_name(interface: &str) -> String {
    format!("{PACKAGE}/{interface}@{VERSION}")
}

/// Splits `sluice:integration/client@0.2.0` into `("client", Some("0.2.0"))`; `None` for
/// names of other packages.
fn contract_interface(name: &str) -> Option<(&str, Option<&str>)> {
    let rest = name.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    Some(match rest.split_once('@') {
        Some((interface, version)) => (interface, Some(version)),
        None => (rest, None),
    })
}

/// What does not match the contract; each line names the interface or function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractMismatch {
    pub problems: Vec<String>,
}

impl std::fmt::Display for ContractMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the component does not match the contract {PACKAGE}@{VERSION} of this host: {}; rebuild it against wit/ of this sluice",
            self.problems.join("; ")
        )
    }
}

impl std::error::Error for ContractMismatch {}

fn function_names(engine: &wasmtime::Engine, item: &ComponentItem) -> Vec<String> {
    match item {
        ComponentItem::ComponentInstance(instance) => instance
            .exports(engine)
            .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
            .map(|(name, _)| name.to_string())
            .collect(),
        _ => Vec::new(),
    }
}

fn version_label(version: Option<&str>) -> String {
    match version {
        Some(version) => format!("{PACKAGE}@{version}"),
        None => format!("{PACKAGE} without a version"),
    }
}

impl Engine {
    /// Checks `component` against the contract and links it; the pre-linked template is
    /// what every call starts from.
    pub(super) fn check_contract(&self, component: &Component) -> Result<IntegrationPre<HostState>, ContractMismatch> {
        let engine = component.engine();
        let ty = component.component_type();
        let mut problems = Vec::new();
        let mut other_versions: Vec<String> = Vec::new();

        for (name, import) in ty.imports(engine) {
            let Some((interface, version)) = contract_interface(name) else {
                continue;
            };
            if version != Some(VERSION) {
                let label = version_label(version);
                if !other_versions.contains(&label) {
                    other_versions.push(label);
                }
                problems.push(format!(
                    "it imports {name}, but this host provides {}",
                    interface_name(interface)
                ));
                continue;
            }
            let Some((_, known)) = IMPORTABLE.iter().find(|(i, _)| *i == interface) else {
                problems.push(format!("it imports {name}, an interface the contract does not have"));
                continue;
            };
            for function in function_names(engine, &import.ty) {
                if !known.contains(&function.as_str()) {
                    problems.push(format!("it imports {interface}.{function}, which {name} does not have"));
                }
            }
        }

        let (exported, expected) = EXPORTED;
        let wanted = interface_name(exported);
        let exports: Vec<(String, ComponentItem)> = ty
            .exports(engine)
            .map(|(name, export)| (name.to_string(), export.ty))
            .collect();
        let found = exports.iter().find(|(name, _)| *name == wanted).or_else(|| {
            exports
                .iter()
                .find(|(name, _)| contract_interface(name).is_some_and(|(i, _)| i == exported))
        });
        match found {
            None => {
                let names: Vec<&str> = exports.iter().map(|(name, _)| name.as_str()).collect();
                problems.push(format!(
                    "it does not export {wanted} (it exports: {})",
                    if names.is_empty() {
                        "nothing".into()
                    } else {
                        names.join(", ")
                    }
                ));
            }
            Some((name, item)) => {
                if *name != wanted {
                    let label = version_label(contract_interface(name).and_then(|(_, v)| v));
                    if !other_versions.contains(&label) {
                        other_versions.push(label);
                    }
                    problems.push(format!("it exports {name} instead of {wanted}"));
                }
                let functions = function_names(engine, item);
                let missing: Vec<&str> = expected
                    .iter()
                    .copied()
                    .filter(|f| !functions.iter().any(|have| have == f))
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!("its {name} is missing {}", missing.join(", ")));
                }
                let unknown: Vec<&str> = functions
                    .iter()
                    .map(String::as_str)
                    .filter(|f| !expected.contains(f))
                    .collect();
                if !unknown.is_empty() {
                    problems.push(format!(
                        "its {name} has {}, which the contract does not have",
                        unknown.join(", ")
                    ));
                }
            }
        }
        if !other_versions.is_empty() {
            problems.insert(
                0,
                format!(
                    "it was built against {}, this host speaks {PACKAGE}@{VERSION}",
                    other_versions.join(" and ")
                ),
            );
        }
        if !problems.is_empty() {
            return Err(ContractMismatch { problems });
        }

        // Names match: wasmtime's type check tells a signature that differs.
        let instance_pre = self
            .linker_for(component)
            .instantiate_pre(component)
            .map_err(|error| ContractMismatch {
                problems: vec![format!("its imports do not link: {error:#}")],
            })?;
        IntegrationPre::new(instance_pre).map_err(|error| ContractMismatch {
            problems: vec![format!("its exports do not have the contract's types: {error:#}")],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_interfaces_are_recognised() {
        assert_eq!(
            contract_interface("sluice:integration/client@0.2.0"),
            Some(("client", Some("0.2.0")))
        );
        assert_eq!(contract_interface("sluice:integration/plugin"), Some(("plugin", None)));
        assert_eq!(contract_interface("wasi:http/types@0.2.0"), None);
        assert_eq!(contract_interface("sluice:integrations/plugin@0.1.0"), None);
    }

    #[test]
    fn the_contract_lists_match_the_wit() {
        let wit = include_str!("../../../wit/integration.wit");
        assert!(wit.contains(&format!("package {PACKAGE}@{VERSION};")));
        for (_, functions) in IMPORTABLE.iter().chain(std::iter::once(&EXPORTED)) {
            for function in *functions {
                assert!(
                    wit.contains(&format!("    {function}: func(")),
                    "{function} is not in the WIT"
                );
            }
        }
    }
}
